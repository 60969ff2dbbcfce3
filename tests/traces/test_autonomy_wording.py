"""The autonomy page counts in words a reader expects."""

import pytest

from tests.traces.test_autonomy import ACTION, decide, setup  # noqa: F401
from tests.traces.test_watchers_support import watching  # noqa: F401

pytestmark = pytest.mark.django_db


def test_one_decision_reads_in_the_singular(setup, admin_client_):  # noqa: F811
    decide(setup, ["approve"])
    html = admin_client_.get("/autonomy/").content.decode()
    assert "1 decision · 1 unedited" in html and "1 decisions" not in html
    decide(setup, ["approve"])
    assert "2 decisions · 2 unedited" in admin_client_.get("/autonomy/").content.decode()
