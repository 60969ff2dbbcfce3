import pytest

from traces.models import Run
from tests import factories
from tests.traces import helpers

pytestmark = pytest.mark.django_db


def _ingest(client, key, **kw):
    spans = helpers.record_agent_run(**kw)
    assert helpers.post(client, helpers.protobuf_body(spans), key=key).status_code == 200
    return format(spans[0].context.trace_id, "032x")


@pytest.fixture
def two_agents_runs(client, agent_key):
    mine = _ingest(client, agent_key, task="refund A")
    _k, other_key = factories.make_key(factories.make_agent("other-bot"))
    theirs = _ingest(client, other_key, task="refund B", error=True)
    return mine, theirs, other_key


def test_agent_key_lists_only_its_own_runs(client, agent_headers, two_agents_runs):
    mine, theirs, _ = two_agents_runs
    response = client.get("/api/v1/runs", **agent_headers)
    assert response.status_code == 200
    assert [r["trace_id"] for r in response.json()["items"]] == [mine]
    assert response.json()["items"][0]["agent"] == "billing-bot"


def test_agent_key_cannot_read_another_agents_run(client, agent_headers, two_agents_runs):
    mine, theirs, _ = two_agents_runs
    assert client.get(f"/api/v1/runs/{theirs}", **agent_headers).status_code == 404
    response = client.get(f"/api/v1/runs/{mine.upper()}", **agent_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == mine and len(body["spans"]) == 3
    assert {s["kind"] for s in body["spans"]} == {"agent", "llm", "tool"}
    assert body["spans"][0]["start_time"] <= body["spans"][-1]["start_time"]


def test_after_seq_returns_only_newer_spans(client, agent_headers, two_agents_runs):
    mine, _theirs, _ = two_agents_runs
    body = client.get(f"/api/v1/runs/{mine}?after_seq=2", **agent_headers).json()
    assert [s["seq"] for s in body["spans"]] == [3]


@pytest.mark.parametrize("role, status", [("anonymous", 401), ("none", 403), ("reviewer", 200),
                                          ("operator", 200), ("admin", 200)])
def test_runs_api_role_rules(clients_by_role, two_agents_runs, role, status):
    mine, theirs, _ = two_agents_runs
    client = clients_by_role[role]
    response = client.get("/api/v1/runs")
    assert response.status_code == status
    detail = client.get(f"/api/v1/runs/{theirs}")
    assert detail.status_code == status
    if status == 200:
        assert {r["trace_id"] for r in response.json()["items"]} == {mine, theirs}
        assert detail.json()["trace_id"] == theirs


def test_filters(operator_client, two_agents_runs):
    mine, theirs, _ = two_agents_runs

    def ids(query):
        response = operator_client.get("/api/v1/runs" + query)
        assert response.status_code == 200, response.content
        return {r["trace_id"] for r in response.json()["items"]}

    assert ids("?agent=other-bot") == {theirs}
    assert ids("?status=error") == {theirs}
    assert ids("?status=ok") == {mine}
    assert ids("?has_error=true") == {theirs}
    assert ids("?has_error=false") == {mine}
    assert ids("?prompt_name=refund-agent&prompt_version=3") == {mine, theirs}
    assert ids("?prompt_version=9") == set()
    assert ids("?q=refund%20B") == {theirs}
    assert ids("?q=Customer%20asks") == {mine, theirs}  # span content
    assert ids("?min_duration_ms=0") == {mine, theirs}
    assert ids("?min_cost=1") == set()
    assert ids("?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z") == {mine, theirs}
    assert ids("?until=2000-01-01T00:00:00Z") == set()
    assert ids("?has_pending_approval=false") == {mine, theirs}


def test_cursor_pagination_walks_every_run_once(client, operator_client, agent_key):
    trace_ids = {_ingest(client, agent_key) for _ in range(5)}
    seen, query = [], "?limit=2"
    while True:
        page = operator_client.get("/api/v1/runs" + query).json()
        seen += [r["trace_id"] for r in page["items"]]
        if not page["next_cursor"]:
            break
        query = f"?limit=2&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(trace_ids) and len(seen) == 5
    ids = [Run.objects.get(trace_id=t).pk for t in seen]
    assert ids == sorted(ids, reverse=True)


def test_bad_filter_values_are_400_naming_the_field(operator_client):
    response = operator_client.get("/api/v1/runs?status=exploded")
    assert response.status_code == 400
    assert "status" in response.json()["detail"]
    assert operator_client.get("/api/v1/runs?cursor=abc").status_code == 400


def test_runs_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert "get" in paths["/api/v1/runs"]
    assert "get" in paths["/api/v1/runs/{trace_id}"]


def test_a_runs_spans_come_in_bounded_pages_by_seq(client, agent_headers, agent_key):
    """One run may hold many thousands of spans: a read answers at most ``limit`` (default 1,000, at most
    5,000) with the lowest seqs after ``after_seq``; the caller pages on until it reaches ``last_seq``."""
    trace_id = _ingest(client, agent_key, n_tools=12)
    first = client.get(f"/api/v1/runs/{trace_id}?limit=5", **agent_headers).json()
    assert first["span_count"] == 14 and len(first["spans"]) == 5
    seen, after = [], 0
    while after < first["last_seq"]:
        page = client.get(f"/api/v1/runs/{trace_id}?limit=5&after_seq={after}", **agent_headers).json()
        assert 0 < len(page["spans"]) <= 5
        seen += [s["seq"] for s in page["spans"]]
        after = max(s["seq"] for s in page["spans"])
    assert sorted(seen) == list(range(1, 15))
    response = client.get(f"/api/v1/runs/{trace_id}?limit=100000", **agent_headers)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "limit"


def test_free_text_search_is_bounded_like_the_runs_page(client, agent_headers):
    """``q`` is matched against every span's text: 200 characters at most, as on the runs page."""
    assert client.get("/api/v1/runs?q=" + "x" * 200, **agent_headers).status_code == 200
    response = client.get("/api/v1/runs?q=" + "x" * 5000, **agent_headers)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "q"
