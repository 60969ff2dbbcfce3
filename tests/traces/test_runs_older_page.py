"""Only the unfiltered first page of runs takes pushed new runs on top; an older page says where they go."""

import pytest

from tests.traces.test_views import make_run

pytestmark = pytest.mark.django_db


def test_an_older_page_of_runs_takes_no_new_runs_on_top(reviewer_client, agent):
    runs = [make_run(agent) for _ in range(3)]
    first = reviewer_client.get("/runs/").content.decode()
    assert 'id="runs-rows"' in first and "New runs appear at the top" in first
    older = reviewer_client.get(f"/runs/?cursor={runs[-1].pk}").content.decode()
    assert 'id="runs-rows"' not in older and 'id="runs-rows-filtered"' in older
    assert "This is an older page" in older and f'id="run-row-{runs[0].pk}"' in older
