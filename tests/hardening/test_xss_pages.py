"""Stored XSS and htmx injection, server side: every page (found by walking the URL resolver) is
fetched with hostile agent content in every agent-supplied field, as a full page and as the htmx
fragment, and must show that content only escaped. The same pages in real Chromium:
tests/browser/test_xss.py."""

import pytest

from tests.hardening.routes import ROUTES, fill
from tests.hardening.xss import ALL_FIELDS, plant, raw_markers_in

pytestmark = pytest.mark.django_db

SKIP = {"logout/", "login/", "metrics", "healthz", "v1/traces"}
# Fields every deployment must show somewhere (the rest are checked whenever a page shows them).
MUST_SHOW = {"action", "summary", "arg_key", "arg_value", "resource", "span_name", "tool_name", "attr_key",
             "attr_value", "input", "output", "tool_args", "task", "status_message"}


def html_routes():
    return [route for route, _p in ROUTES if not route.startswith(("api/", "v1/")) and route not in SKIP]


def fetch_all(client, hostile):
    pages = {}
    for route in html_routes():
        url = fill(route, hostile.world)
        for htmx in (False, True):
            extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            response = client.get(url, **extra)
            pages[(url, htmx)] = response
    from traces.models import Span

    for span_id in Span.objects.filter(run=hostile.world.run).values_list("span_id", flat=True):
        url = f"/runs/{hostile.trace_id}/spans/{span_id}/"
        pages[(url, False)] = client.get(url)
        pages[(url, True)] = client.get(url, HTTP_HX_REQUEST="true")
    # the list pages filtered by the hostile values too
    for url in ("/runs/?q=%3Cscript%3E", "/approvals/?q=%3Cscript%3E", "/audit/?action=%3Cscript%3E"):
        pages[(url, False)] = client.get(url)
    return pages


@pytest.mark.parametrize("role", ["admin", "reviewer"])
def test_agent_content_is_only_ever_escaped(world, role):
    hostile = plant(world)
    client = world.client(role)
    problems, seen = [], set()
    for (url, htmx), response in fetch_all(client, hostile).items():
        if response.status_code >= 500:
            problems.append(f"{url} (htmx={htmx}): {response.status_code}")
            continue
        if "html" not in response.get("Content-Type", ""):
            continue
        html = response.content.decode()
        if markers := raw_markers_in(html):
            problems.append(f"{url} (htmx={htmx}): unescaped {markers}")
        seen |= {field for field in ALL_FIELDS if f"__xss__/{field}" in html}
    assert not problems, "\n".join(problems)
    if role == "admin":
        assert MUST_SHOW <= seen, f"fields never shown (the test would prove nothing): {MUST_SHOW - seen}"


def test_the_live_fragments_escape_agent_content(world):
    """What the websocket pushes is rendered from the same partials: render them directly."""
    from django.template.loader import render_to_string

    from approvals.models import ApprovalRequest
    from traces.models import Span

    hostile = plant(world)
    spans = Span.objects.filter(run=hostile.world.run).order_by("seq")
    html = render_to_string("traces/partials/span_rows.html",
                            {"spans": spans, "run": hostile.world.run, "run_id": hostile.world.run.pk, "oob": True})
    assert "__xss__/span_name" in html or "__xss__/tool_name" in html
    assert not raw_markers_in(html)
    html = render_to_string("traces/partials/run_row.html", {"run": hostile.world.run, "oob": True})
    assert not raw_markers_in(html)
    req = ApprovalRequest.objects.get(pk=hostile.request_ids[0])
    from approvals.views.requests import card_html

    fragment = card_html(world.client("admin").get("/").wsgi_request, req, ctx="queue", oob=True)
    assert "__xss__/action" in fragment or "__xss__/summary" in fragment
    assert not raw_markers_in(fragment)


def csp_problems(url, response) -> list[str]:
    csp = response.get("Content-Security-Policy", "")
    if not csp:
        return [f"{url}: no Content-Security-Policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    script = directives.get("script-src") or directives.get("default-src") or ""
    problems = []
    if not script or "'unsafe-inline'" in script or "'unsafe-eval'" in script:
        problems.append(f"{url}: script-src {script!r}")
    if "'unsafe-inline'" in directives.get("style-src", ""):
        problems.append(f"{url}: style-src allows inline")
    if directives.get("object-src") != "object-src 'none'" or directives.get("frame-ancestors") != \
            "frame-ancestors 'none'":
        problems.append(f"{url}: object-src/frame-ancestors not 'none'")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{url}: no X-Content-Type-Options: nosniff")
    return problems


def test_every_html_page_sends_a_csp_without_inline_scripts(world):
    """Every GET page of the resolver walk (as an Admin, who is admitted everywhere), the login page
    and the error pages."""
    admin, problems, checked = world.client("admin"), [], 0
    for route in html_routes():
        url = fill(route, world)
        response = admin.get(url)
        if response.status_code == 405:
            continue  # POST-only: answers are redirects or fragments, checked by the CSRF test
        checked += 1
        problems += csp_problems(url, response)
    for url, response in (("/login/", world.client("anonymous").get("/login/")),
                          ("/no-such-page/", admin.get("/no-such-page/")),
                          ("/audit/ as reviewer (403)", world.client("reviewer").get("/audit/"))):
        problems += csp_problems(url, response)
    assert checked > 20
    assert not problems, "\n".join(problems)
