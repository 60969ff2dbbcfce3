"""Schemathesis against the JSON API, from the served OpenAPI document.

Every operation gets a bounded, deterministic set of valid and invalid inputs
(25 per operation), sent through the Django test client as an agent (bearer key)
and as a reviewer (session). No answer may be a 5xx, and every 4xx names what
was wrong: ``detail``, and for a 400 also ``errors[].field``.
"""

import json
from urllib.parse import urlencode

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

pytestmark = pytest.mark.django_db


def _openapi() -> dict:
    import console.urls  # noqa: F401 - the routers are added to the API there
    from console.api import api

    return json.loads(json.dumps(api.get_openapi_schema(), default=str))


schema = schemathesis.openapi.from_dict(_openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=25,
                                deterministic=True, with_security_parameters=False, allow_x00=True)

MAX_TEST_WAIT_S = 0.2  # ?wait= holds for up to 60 s by design; the fuzz only needs it to parse


def _is_set(value) -> bool:
    return value is not None and type(value).__name__ != "NotSet"


def _query(case) -> str:
    query = dict(case.query) if _is_set(case.query) else {}
    if "wait" in query:
        try:
            if float(query["wait"]) > MAX_TEST_WAIT_S:
                query["wait"] = MAX_TEST_WAIT_S
        except (TypeError, ValueError):
            pass
    flat = {}
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        flat[key] = ["true" if v is True else "false" if v is False else "" if v is None else str(v) for v in values]
    return urlencode(flat, doseq=True)


def send(client: Client, case):
    path = case.formatted_path
    query = _query(case)
    url = "/api/v1" + path + (f"?{query}" if query else "")
    extra = {}
    if _is_set(case.headers):
        for name, value in case.headers.items():
            if name.lower() in ("authorization", "cookie", "content-type", "content-length"):
                continue
            extra["HTTP_" + name.upper().replace("-", "_")] = str(value)
    method = case.method.upper()
    if _is_set(case.body):
        body = json.dumps(case.body) if not isinstance(case.body, (bytes, str)) else case.body
        return client.generic(method, url, body, content_type=case.media_type or "application/json", **extra)
    return client.generic(method, url, **extra)


def check(response, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.content[:500]!r}"
    if response.status_code < 400:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        pytest.fail(f"{where}: {response.status_code} without a JSON body: {response.content[:200]!r}")
    assert isinstance(body.get("detail"), str) and body["detail"], f"{where}: no detail in {body}"
    if response.status_code in (400, 422):
        errors = body.get("errors")
        assert errors and all(isinstance(e.get("field"), str) and e["field"] for e in errors), \
            f"{where}: a 400 must name the bad field: {body}"


def _clients(world, case) -> list[tuple[str, Client]]:
    agent = ("agent", Client(HTTP_AUTHORIZATION=f"Bearer {world.key}"))
    reviewer = ("reviewer", world.client("reviewer"))
    if case.path.endswith("/decision"):
        return [reviewer, agent]
    if case.method.upper() == "GET":
        return [agent, reviewer]
    return [agent]


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_never_fails_and_names_the_bad_field(case, world):
    for who, client in _clients(world, case):
        response = send(client, case)
        check(response, f"{who} {case.method.upper()} {case.formatted_path} query={case.query!r} "
                        f"body={case.body!r}"[:800])


def test_the_fuzz_reaches_real_rows(world):
    """A sanity check that the operations answer 2xx for good input (so the fuzz is not all 401/404)."""
    agent = Client(HTTP_AUTHORIZATION=f"Bearer {world.key}")
    assert agent.get(f"/api/v1/approvals/{world.request.pk}").status_code == 200
    assert agent.get(f"/api/v1/runs/{world.run.trace_id}").status_code == 200
    assert agent.post("/api/v1/approvals", {"action": "billing.x", "risk": "high"},
                      content_type="application/json").status_code == 201
    response = agent.post("/api/v1/approvals", {"action": "", "risk": "extreme"}, content_type="application/json")
    check(response, "bad create")
    assert {e["field"] for e in response.json()["errors"]} == {"action", "risk"}


@pytest.mark.parametrize("url", ["/api/v1/approvals/{pk}?wait=-1", "/api/v1/runs?cursor=abc",
                                 "/api/v1/runs?limit=0", "/api/v1/approvals/{pk}?wait=nan"])
def test_hand_made_400s_name_the_field_too(world, url):
    agent = Client(HTTP_AUTHORIZATION=f"Bearer {world.key}")
    response = agent.get(url.format(pk=world.request.pk))
    assert response.status_code == 400
    check(response, url)
