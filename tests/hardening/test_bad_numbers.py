"""Numbers in filters, cursors and forms: characters ``str.isdigit`` accepts but ``int`` refuses
(superscripts such as "²"), and decimals past what the column holds, are bad input, never a 500."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role, url", [
    ("admin", "/audit/?cursor=%C2%B2"),
    ("admin", "/incidents/?cursor=%C2%B2"),
    ("admin", "/incidents/?agent=%C2%B2"),
    ("admin", "/runs/?cursor=%C2%B2"),
    ("admin", "/runs/{trace_id}/spans?after=%C2%B2"),
    ("admin", "/runs/{trace_id}/spans?from={span_id}&depth=%C2%B2"),
    ("admin", "/runs/?min_cost=1e999999"),
])
def test_pages_treat_odd_numbers_as_bad_input(world, role, url):
    response = world.client(role).get(url.format(trace_id=world.run.trace_id, span_id=world.span_id))
    assert response.status_code in (200, 400, 404)


@pytest.mark.parametrize("query, field", [("cursor=%C2%B2", "cursor"), ("min_cost=1e999999", "min_cost")])
def test_the_runs_api_names_the_bad_number(world, query, field):
    response = world.client("agent_key").get(f"/api/v1/runs?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_forms_ignore_odd_numbers(world):
    response = world.client("admin").post("/incidents/detectors/", {"kind": "loop", "agent": "\u00b2",
                                                                     "params": "{}"})
    assert response.status_code < 500
    response = world.client("admin").post(f"/prompts/{world.prompt_name}/v1/refine/",
                                          {"template": "", "answers": ["\u00b2"]})
    assert response.status_code < 500
