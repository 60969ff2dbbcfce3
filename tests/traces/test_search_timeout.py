"""The runs text search (API ``q``, the page's "text in spans") runs under RUNS_SEARCH_TIMEOUT_MS on
PostgreSQL: a search that runs past it is a 400 naming ``q`` (API) or an error on the search box (page),
never a 500.

A search that cannot finish is made without timing: another transaction holds an ACCESS EXCLUSIVE lock on
the spans table, so the search waits for it until its statement timeout cancels it.
"""

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from tests.traces import helpers
from traces import search
from traces.models import Span

pytestmark = pytest.mark.postgres


@contextmanager
def spans_locked():
    """The spans table locked by another connection until the block ends (at most 60 s)."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Span._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join(30)


@pytest.fixture
def a_run(client, agent_key):
    spans = helpers.record_agent_run(task="refund A")
    assert helpers.post(client, helpers.protobuf_body(spans), key=agent_key).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_api_search_past_the_timeout_is_400_naming_q(client, agent_headers, a_run, settings):
    settings.RUNS_SEARCH_TIMEOUT_MS = 200
    with spans_locked():
        response = client.get("/api/v1/runs?q=refund", **agent_headers)
        assert client.get("/api/v1/runs?status=ok", **agent_headers).status_code == 200  # no search, no bound
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "q:" in detail and "since/until" in detail
    assert client.get("/api/v1/runs?q=refund", **agent_headers).json()["items"]  # once it can finish, it does


@pytest.mark.django_db(transaction=True)
def test_page_search_past_the_timeout_is_an_error_on_the_search_box(operator_client, a_run, settings):
    settings.RUNS_SEARCH_TIMEOUT_MS = 200
    with spans_locked():
        response = operator_client.get("/runs/?q=refund")
    assert response.status_code == 200
    form = response.context["form"]
    assert "narrow the time range" in " ".join(form.errors["q"])
    assert "narrow the time range" in response.content.decode()
    assert len(response.context["runs"]) == 1  # the list, without the search


@pytest.mark.django_db(transaction=True)
def test_after_a_search_timeout_the_next_page_link_does_not_search_again(operator_client, a_run, settings):
    from traces.models import Run
    from traces.views.runs import PAGE_SIZE

    run = Run.objects.get()
    for i in range(PAGE_SIZE):  # more runs than one page holds
        run.pk, run.trace_id = None, f"{i:032x}"
        run.save()
    settings.RUNS_SEARCH_TIMEOUT_MS = 200
    with spans_locked():
        response = operator_client.get("/runs/?q=refund&status=ok")
    page = response.context["page"]
    assert "q" in response.context["form"].errors
    assert page.next_query and "cursor=" in page.next_query and "status=ok" in page.next_query
    assert "q=" not in page.next_query


@pytest.mark.django_db
def test_the_timeout_ends_with_the_search_inside_an_outer_transaction(settings):
    settings.RUNS_SEARCH_TIMEOUT_MS = 1234
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
        with search.bounded_search():
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "1234ms"
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == before
