"""My queue's intro reads as sentences."""

import pytest

from tests.approvals.test_views import make_pending, make_queue

pytestmark = pytest.mark.django_db


def test_the_queue_list_ends_its_sentence_before_the_shortcut_hint(reviewer_client, reviewer, agent):
    make_pending(agent, make_queue("billing", reviewer))
    html = reviewer_client.get("/approvals/").content.decode()
    assert "<strong>billing</strong>.\n Press <kbd>j</kbd>" in html
