"""Every URL pattern of the project, and a concrete URL for each pointing at a test world's rows."""

import re

from django.urls import URLPattern, URLResolver, get_resolver


def walk(patterns=None, prefix=""):
    """(route, URLPattern) for every pattern in the project."""
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


ROUTES = [(route, p) for route, p in walk() if not route.startswith("django-admin/")]
ADMIN_SITE_ROUTES = [(route, p) for route, p in walk() if route.startswith("django-admin/")]


def fill(route: str, world) -> str:
    """A concrete URL for ``route``: its parameters point at the world's rows."""
    by_prefix = {
        "agents/keys/": {"key_id": world.spare_key.pk},
        "agents/": {"pk": world.agent.pk},
        "approvals/": {"pk": world.request.pk},
        "queues/": {"pk": world.queue.pk},
        "policies/rules/": {"pk": world.rule.pk},
        "api/v1/approvals": {"approval_id": world.request.pk},
        "api/v1/runs": {"trace_id": world.run.trace_id},
        "runs/": {"trace_id": world.run.trace_id, "span_id": world.span_id},
        "prompts/": {"name": world.prompt_name, "number": 1, "label": "production"},
        "api/v1/prompts": {"name": world.prompt_name},
        "django-admin/": {"app_label": "auth", "model_name": "user", "object_id": world.admin.pk,
                          "content_type_id": 1, "url": "x"},
    }
    values = {}
    for prefix, mapping in by_prefix.items():
        if route.startswith(prefix):
            values = {**mapping, **values}
    generic = {"pk": 1, "id": 1, "name": "x", "slug": "x"}

    def replace(match):
        name = match.group(2)
        return str(values.get(name, generic.get(name, 1)))

    url = "/" + re.sub(r"<(?:(\w+):)?(\w+)>", replace, route)
    url = re.sub(r"[\^$]", "", url).replace("\\", "")
    return url
