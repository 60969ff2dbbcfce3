"""Who may open the trace pages: staff roles yes; no role 403; anonymous and agent keys go to login."""

import pytest

from tests.traces.test_views import make_run, make_spans

PAGES = ["/runs/", "/runs/metrics/", "/runs/metrics/?agent=billing-bot&range=7d", "/runs/{t}/", "/runs/{t}/graph/",
         "/runs/{t}/spans?after=0", "/runs/{t}/spans?under={root}", "/runs/{t}/spans/{root}/"]


@pytest.fixture
def run_and_root(agent):
    run = make_run(agent)
    spans = make_spans(run, 3)
    return run, spans[0]


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("who,expected", [("anonymous", 302), ("none", 403), ("reviewer", 200),
                                          ("operator", 200), ("admin", 200)])
def test_role_matrix(clients_by_role, run_and_root, url, who, expected):
    run, root = run_and_root
    response = clients_by_role[who].get(url.format(t=run.trace_id, root=root.span_id))
    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith("/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_agent_key_is_not_a_session(client, agent_key, run_and_root, url):
    run, root = run_and_root
    response = client.get(url.format(t=run.trace_id, root=root.span_id), HTTP_AUTHORIZATION=f"Bearer {agent_key}")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_runs_nav_link_for_staff_only(clients_by_role):
    assert 'href="/runs/"' in clients_by_role["reviewer"].get("/").content.decode()
    assert 'href="/runs/"' not in clients_by_role["none"].get("/").content.decode()
