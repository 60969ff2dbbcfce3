"""The runs list, run timeline, span rows endpoints, span panel, graph, metrics and tile."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from traces.models import Run, RunStatus, Span, SpanKind, SpanStatus
from traces.views import tree as trees

T0 = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)


def make_run(agent, **fields) -> Run:
    defaults = {"trace_id": uuid.uuid4().hex, "name": "invoke_agent", "task": "Refund order 42",
                "status": RunStatus.OK, "root_ended": True, "started_at": T0, "ended_at": T0 + timedelta(seconds=2),
                "duration_ms": 2000}
    return Run.objects.create(agent=agent, **{**defaults, **fields})


def make_spans(run, n, *, parent_of=None, kind=SpanKind.OTHER, start=None, **fields) -> list[Span]:
    """``n`` spans; the first is the root, the others its children unless ``parent_of(i, ids)`` says otherwise."""
    start = start or run.started_at
    ids = [uuid.uuid4().hex[:16] for _ in range(n)]
    base = run.last_seq
    spans = []
    for i, span_id in enumerate(ids):
        parent = "" if i == 0 else (parent_of(i, ids) if parent_of else ids[0])
        spans.append(Span(run=run, span_id=span_id, parent_span_id=parent, name=fields.get("name", f"step {i}"),
                          kind=SpanKind.AGENT if i == 0 else kind, start_time=start + timedelta(milliseconds=i),
                          end_time=start + timedelta(milliseconds=i + 5), duration_ms=5, seq=base + i + 1,
                          received_at=start, **{k: v for k, v in fields.items() if k != "name"}))
    Span.objects.bulk_create(spans)
    Run.objects.filter(pk=run.pk).update(last_seq=base + n, span_count=run.span_count + n)
    run.refresh_from_db()
    return spans


# --- runs list ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_runs_list_shows_columns_and_live_hooks(reviewer_client, agent):
    run = make_run(agent, total_tokens=1500, cost=Decimal("0.0123"))
    html = reviewer_client.get("/runs/").content.decode()
    assert f'id="run-row-{run.pk}"' in html and "billing-bot" in html and "Refund order 42" in html
    assert "1500" in html and "$0.0123" in html and "2.00 s" in html
    assert "UTC" in html  # start time shows its zone
    assert 'ws-connect="/ws/live/runs/"' in html and 'id="runs-rows"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("query,shown,hidden", [
    ("status=error", "bad", "good"),
    ("has_error=on", "bad", "good"),
    ("min_cost=1", "bad", "good"),
    ("min_duration_ms=5000", "bad", "good"),
    ("has_pending_approval=on", "bad", "good"),
    ("prompt_version=refund%403", "bad", "good"),
    ("prompt_version=3", "bad", "good"),
    ("agent=other-bot", "bad", "good"),
    ("q=gateway+timeout", "bad", "good"),
    ("range=1h", "good", "bad"),
])
def test_runs_list_filters(reviewer_client, agent, query, shown, hidden, fixed_now, monkeypatch):
    from tests import factories

    other = factories.make_agent("other-bot")
    good = make_run(agent, name="good", started_at=datetime.now(UTC) - timedelta(minutes=5))
    bad = make_run(other, name="bad", status=RunStatus.ERROR, error_count=1, cost=Decimal("2.5"), duration_ms=9000,
                   has_pending_approval=True, prompt_name="refund", prompt_version="3",
                   started_at=datetime.now(UTC) - timedelta(hours=5))
    make_spans(bad, 2, input_text="the payment gateway timeout again")
    make_spans(good, 2, input_text="all fine")
    html = reviewer_client.get(f"/runs/?{query}").content.decode()
    runs = {"good": good, "bad": bad}
    assert f'id="run-row-{runs[shown].pk}"' in html
    assert f'id="run-row-{runs[hidden].pk}"' not in html
    # with a filter on, pushed new rows have no #runs-rows to land in (only in-place updates apply)
    assert 'id="runs-rows-filtered"' in html and 'id="runs-rows"' not in html
    assert "new runs are not added here" in html


@pytest.mark.django_db
def test_runs_list_invalid_filter_is_shown_not_crashing(reviewer_client, agent):
    make_run(agent)
    response = reviewer_client.get("/runs/?min_cost=abc")
    assert response.status_code == 200 and "Enter a number" in response.content.decode()


@pytest.mark.django_db
def test_runs_list_keyset_pages(reviewer_client, agent):
    runs = [make_run(agent, name=f"run {i}") for i in range(55)]
    first = reviewer_client.get("/runs/").content.decode()
    assert first.count('class="run-row') == 50
    assert f'id="run-row-{runs[-1].pk}"' in first and f'id="run-row-{runs[4].pk}"' not in first
    cursor = runs[5].pk
    assert f"cursor={cursor}" in first
    more = reviewer_client.get(f"/runs/?cursor={cursor}", HTTP_HX_REQUEST="true").content.decode()
    assert more.count('class="run-row') == 5 and "<html" not in more
    assert f'id="run-row-{runs[0].pk}"' in more and 'id="runs-more"' not in more


# --- run page ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_run_page_waterfall_nesting_and_header(reviewer_client, agent):
    run = make_run(agent, input_tokens=10, output_tokens=20, total_tokens=30, cost=Decimal("0.5"), error_count=1)
    root, child, grandchild = make_spans(run, 3, parent_of=lambda i, ids: ids[i - 1])
    Span.objects.filter(pk=grandchild.pk).update(status=SpanStatus.ERROR, status_message="boom", kind=SpanKind.TOOL,
                                                 tool_name="refund")
    html = reviewer_client.get(f"/runs/{run.trace_id}/").content.decode()
    assert f'id="spans-{run.pk}"' in html and f'data-cursor="{run.last_seq}"' in html
    assert f'ws-connect="/ws/live/run-{run.pk}/"' in html
    assert f'id="run-row-{run.pk}"' in html  # the header row the live push updates
    for depth, span in enumerate((root, child, grandchild)):
        assert f'id="span-{run.pk}-{span.span_id}"' in html
        row = html.split(f'id="span-{run.pk}-{span.span_id}"')[1].split("</div>")[0]
        assert f'data-depth="{depth}"' in row and f"depth-{depth}" in row
    assert "span-error" in html and "error: boom" in html and "⚙ Tool" in html
    assert '<svg class="span-bar"' in html and 'width="5.000"' in html and 'x="2.000"' in html
    assert "10 / 20" in html  # tokens in / out
    assert 'style="' not in html.split('<main id="main"')[1]  # CSP: no inline styles


@pytest.mark.django_db
def test_unknown_run_is_404(reviewer_client):
    assert reviewer_client.get("/runs/" + "0" * 32 + "/").status_code == 404


@pytest.mark.django_db
def test_spans_after_cursor_returns_only_newer_rows_in_seq_order(reviewer_client, agent):
    run = make_run(agent)
    first = make_spans(run, 3)
    later = make_spans(run, 2, parent_of=lambda i, ids: first[0].span_id)
    html = reviewer_client.get(f"/runs/{run.trace_id}/spans?after=3", HTTP_HX_REQUEST="true").content.decode()
    assert html.count('class="span-row') == 2  # both of the later spans (seq 4, 5), none of the first
    assert all(f"span-{run.pk}-{s.span_id}" not in html for s in first)
    assert html.index(later[0].span_id) < html.index(later[1].span_id)
    assert 'data-after="5"' in html and 'data-more="0"' in html
    assert "hx-swap-oob" not in html
    assert 'data-more="0"' in reviewer_client.get(f"/runs/{run.trace_id}/spans?after=5").content.decode()
    assert reviewer_client.get(f"/runs/{run.trace_id}/spans?after=x").status_code == 404


@pytest.mark.django_db
def test_spans_after_cursor_pages(reviewer_client, agent, monkeypatch):
    from traces.views import timeline

    monkeypatch.setattr(timeline, "AFTER_LIMIT", 4)
    run = make_run(agent)
    make_spans(run, 10)
    html = reviewer_client.get(f"/runs/{run.trace_id}/spans?after=2").content.decode()
    assert html.count('class="span-row') == 4 and 'data-after="6"' in html and 'data-more="1"' in html


def _big_run(agent, n=5000, fan=10):
    """A root, ``fan`` agent steps under it, and the rest spread below them three levels deep."""
    run = make_run(agent, span_count=0)

    def parent_of(i, ids):
        if i <= fan:
            return ids[0]
        return ids[(i - 1) // fan]  # a tree with ``fan`` children per node
    spans = make_spans(run, n, parent_of=parent_of, kind=SpanKind.LLM, model="gpt-4o", cost=Decimal("0.001"))
    return run, spans


@pytest.mark.django_db
def test_big_run_renders_collapsed_with_a_fixed_number_of_queries(reviewer_client, agent,
                                                                    django_assert_max_num_queries):
    run, spans = _big_run(agent)
    with django_assert_max_num_queries(8):
        response = reviewer_client.get(f"/runs/{run.trace_id}/")
    html = response.content.decode()
    rows = html.count('class="span-row')
    assert 0 < rows <= trees.PAGE_ROWS
    assert "span-collapsed" in html and 'data-collapsed="1"' in html
    assert f'data-cursor="{run.last_seq}"' in html  # the cursor covers spans not rendered


@pytest.mark.django_db
def test_expanding_a_folded_subtree_returns_its_rows(reviewer_client, agent, django_assert_max_num_queries):
    run, spans = _big_run(agent, n=1200)
    html = reviewer_client.get(f"/runs/{run.trace_id}/").content.decode()
    folded = html.split('span-collapsed"')[0].rsplit('data-span-id="', 1)[1][:16]
    with django_assert_max_num_queries(6):
        chunk = reviewer_client.get(f"/runs/{run.trace_id}/spans?under={folded}").content.decode()
    ids = {s.span_id: s for s in spans}
    shown = [part[:16] for part in chunk.split('data-span-id="')[1:]]
    assert shown and all(ids[s].parent_span_id in {folded, *shown} for s in shown)
    assert reviewer_client.get(f"/runs/{run.trace_id}/spans?under=ffffffffffffffff").status_code == 404


@pytest.mark.django_db
def test_more_marker_continues_a_wide_level(reviewer_client, agent):
    run = make_run(agent)
    page = trees.PAGE_ROWS
    spans = make_spans(run, 2 * page + 100)  # a root with too many children for one page
    html = reviewer_client.get(f"/runs/{run.trace_id}/").content.decode()
    assert html.count('class="span-row') == page and 'class="span-more"' in html
    url = html.split('class="span-more"')[1].split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    chunk = reviewer_client.get(url).content.decode()
    assert chunk.count('class="span-row') == page and 'class="span-more"' in chunk
    assert f"span-{run.pk}-{spans[page].span_id}" in chunk and f"span-{run.pk}-{spans[page - 1].span_id}" not in chunk


# --- span panel --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_span_panel_shows_conversation_tool_state_events_and_approval(reviewer_client, reviewer, agent):
    from approvals.models import ApprovalRequest, Queue

    queue = Queue.objects.create(name="refunds")
    queue.members.add(reviewer)  # a reviewer sees the requests of their queues only

    run = make_run(agent)
    root, llm, tool, state = make_spans(run, 4)
    Span.objects.filter(pk=llm.pk).update(kind=SpanKind.LLM, input_text=json.dumps(
        [{"role": "system", "parts": [{"type": "text", "content": "Be careful."}]},
         {"role": "user", "parts": [{"type": "text", "content": "Refund order 42"}]}]),
        output_text=json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "Calling the tool."},
            {"type": "tool_call", "name": "refund", "arguments": {"order": 42}}]}]),
        events=[{"name": "gen_ai.evaluation.result", "time_unix_nano": 1764068400000000000,
                 "attributes": {"score": 0.2}}])
    Span.objects.filter(pk=tool.pk).update(kind=SpanKind.TOOL, tool_name="refund",
                                           tool_arguments={"order": 42, "amount": 10}, output_text='{"ok": true}')
    Span.objects.filter(pk=state.pk).update(kind=SpanKind.STATE, attributes={
        "console.state.key": "cart", "console.state.before": '{"items": 1}', "console.state.after": '{"items": 2}',
        "custom.flag": True})
    ApprovalRequest.objects.create(agent=agent, action="refund", arguments={}, arguments_digest="x", risk="high",
                                   trace_id=run.trace_id, span_id=tool.span_id, queue=queue)

    html = reviewer_client.get(f"/runs/{run.trace_id}/spans/{llm.span_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html
    assert 'class="bubble role-system' in html and "Be careful." in html and "Refund order 42" in html
    assert "role-assistant" in html and "refund({" in html and "gen_ai.evaluation.result" in html

    html = reviewer_client.get(f"/runs/{run.trace_id}/spans/{tool.span_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "&quot;amount&quot;: 10" in html and "Asked for approval" in html and "/approvals/" in html

    html = reviewer_client.get(f"/runs/{run.trace_id}/spans/{state.span_id}/").content.decode()
    assert "<html" in html  # without htmx: a full page
    assert '<span class="diff-del">-   &quot;items&quot;: 1' in html and '<span class="diff-add">+   &quot;items&quot;: 2' in html
    assert "custom.flag" in html and "console.state.before" not in html


# --- XSS -------------------------------------------------------------------------------------------

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b hx-get="/logout/">x</b>'


@pytest.mark.django_db
def test_agent_text_renders_escaped_everywhere(reviewer_client):
    from tests import factories

    agent = factories.make_agent("evil-bot")
    run = make_run(agent, name=EVIL, task=EVIL)
    root, llm, tool = make_spans(run, 3, name=EVIL, status=SpanStatus.ERROR, status_message=EVIL, model=EVIL,
                                 tool_name=EVIL, input_text=json.dumps([{"role": EVIL, "content": EVIL}]),
                                 output_text=EVIL, tool_arguments={EVIL: EVIL}, attributes={EVIL: EVIL},
                                 events=[{"name": EVIL, "attributes": {EVIL: EVIL}}],
                                 links=[{"trace_id": run.trace_id, "span_id": EVIL}])
    Span.objects.filter(pk=llm.pk).update(kind=SpanKind.LLM)
    Span.objects.filter(pk=tool.pk).update(kind=SpanKind.TOOL)
    urls = ["/runs/", f"/runs/?q={EVIL}", f"/runs/{run.trace_id}/", f"/runs/{run.trace_id}/graph/",
            f"/runs/{run.trace_id}/spans?after=0", f"/runs/{run.trace_id}/spans?under={root.span_id}",
            "/runs/metrics/", "/"]
    urls += [f"/runs/{run.trace_id}/spans/{s.span_id}/" for s in (root, llm, tool)]
    for url in urls:
        html = reviewer_client.get(url).content.decode()
        assert "<script>window" not in html and "<img src=x" not in html and '<b hx-get="/logout/"' not in html, url
        assert "hx-get=\"/logout/\"" not in html, url
    html = reviewer_client.get(f"/runs/{run.trace_id}/spans/{llm.span_id}/").content.decode()
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


# --- graph ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_graph_highlights_failing_and_costly_paths_and_links(reviewer_client, agent):
    run = make_run(agent)
    root, a, b, a1 = make_spans(run, 4, parent_of=lambda i, ids: {1: ids[0], 2: ids[0], 3: ids[1]}[i])
    Span.objects.filter(pk=a1.pk).update(status=SpanStatus.ERROR)
    Span.objects.filter(pk=b.pk).update(cost=Decimal("1.5"), links=[{"trace_id": run.trace_id, "span_id": a.span_id}])
    html = reviewer_client.get(f"/runs/{run.trace_id}/graph/").content.decode()
    svg = html.split('<svg class="causal-graph"')[1]
    def node(span):
        return svg.split(f'/spans/{span.span_id}/"')[1].split("</a>")[0]
    assert "node-failing" in node(a1) and "node-error" in node(a1) and "node-failing" in node(a)
    assert "node-failing" in node(root) and "node-failing" not in node(b)
    assert "node-costly" in node(b) and "node-costly" not in node(a)
    assert 'class="edge edge-link"' in svg


@pytest.mark.django_db
def test_graph_folds_wide_levels_for_big_runs(reviewer_client, agent):
    run, spans = _big_run(agent, n=800, fan=40)
    Span.objects.filter(pk=spans[-1].pk).update(status=SpanStatus.ERROR)
    html = reviewer_client.get(f"/runs/{run.trace_id}/graph/").content.decode()
    assert "more</text>" in html
    nodes = html.count('class="node-link"')
    assert nodes < 700
    assert f'/spans/{spans[-1].span_id}/' in html  # the failing span stays visible however deep


# --- metrics and tile ------------------------------------------------------------------------

@pytest.mark.django_db
def test_metrics_page_has_charts_and_percentiles(reviewer_client, agent):
    now = datetime.now(UTC)
    for i, ms in enumerate([100, 200, 300, 400, 10_000]):
        run = make_run(agent, started_at=now - timedelta(minutes=30 + i), duration_ms=ms, total_tokens=100,
                       cost=Decimal("0.01"), error_count=1 if i == 0 else 0)
        if i == 0:
            make_spans(run, 3, kind=SpanKind.TOOL, tool_name="refund", start=now - timedelta(minutes=30))
    html = reviewer_client.get("/runs/metrics/").content.decode()
    assert html.count('<svg class="chart') >= 6
    assert 'data-testid="metric-runs">5<' in html
    assert "20.0%" in html  # 1 of 5 runs had errors
    latency = html.split('data-testid="metric-latency">')[1].split("</dd>")[0]
    assert latency.startswith("300 ms")  # p50 of 100..10,000
    assert "refund" in html and "billing-bot" in html
    html = reviewer_client.get("/runs/metrics/?agent=billing-bot&range=1h").content.decode()
    assert "Run metrics · billing-bot" in html and "By agent" not in html


@pytest.mark.django_db
def test_tile_context_works_without_a_user(agent):
    from console import dashboard
    from traces.views.tile import tile_context

    now = datetime.now(UTC)
    make_run(agent, status=RunStatus.RUNNING, root_ended=False, started_at=now, cost=Decimal("1.25"))
    make_run(agent, started_at=now - timedelta(hours=1), error_count=1)
    context = tile_context(None)
    assert context["runs_in_flight"] == 1 and context["cost_today"][0]["agent__name"] == "billing-bot"
    html = dashboard.render_tile("traces/partials/tile_runs.html", {**context, "oob": True})
    assert 'id="tile-runs"' in html and 'hx-swap-oob="true"' in html and "<svg" in html
    assert 'href="/runs/?status=running"' in html and "/runs/?agent=billing-bot" in html


def test_span_panel_shows_json_nested_past_the_recursion_limit_as_text(reviewer_client, agent):
    """An agent's JSON nested thousands deep made the span panel answer 500 (RecursionError parsing or
    laying it out); it is shown as the text it came as."""
    run = make_run(agent)
    (tool,) = make_spans(run, 1)
    deep = "[" * 5000 + "]" * 5000
    Span.objects.filter(pk=tool.pk).update(kind=SpanKind.TOOL, tool_name="deep", tool_arguments=deep,
                                           output_text=deep, input_text='{"a": ' * 3000 + "1" + "}" * 3000)
    response = reviewer_client.get(f"/runs/{run.trace_id}/spans/{tool.span_id}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "[[[[[[[[" in response.content.decode()
