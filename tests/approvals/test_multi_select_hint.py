"""Multiple-choice lists say how to pick more than one (a plain click replaces the choice)."""

import re

import pytest

from tests.approvals.test_views import HTMX, make_queue
from tests.approvals.test_views_policies import level

pytestmark = pytest.mark.django_db


def _hint_after(html: str, name: str) -> bool:
    start = html.index(f'name="{name}"')
    return 'data-testid="multi-select-hint"' in html[start:html.index("</div>", start)]


def test_queue_members_and_matrix_recipients_explain_ctrl_click(admin_client_, reviewer):
    queue = make_queue("billing", reviewer)
    assert _hint_after(admin_client_.get(f"/queues/{queue.pk}/").content.decode(), "members")
    matrix = admin_client_.post(f"/queues/{queue.pk}/matrix/", {"op": "add", "breach_action": "keep_pending_and_page",
                                                                **level(0)}, **HTMX).content.decode()
    names = re.findall(r'<select name="(level-\d+-(?:users|groups))"[^>]*multiple', matrix)
    assert len(names) == 4 and all(_hint_after(matrix, name) for name in names)


def test_single_selects_and_checkbox_groups_get_no_hint(admin_client_, reviewer):
    queue = make_queue("billing", reviewer)
    html = admin_client_.get("/policies/rules/new/").content.decode()
    assert 'data-testid="multi-select-hint"' not in html  # risks are checkboxes, agent/queue single selects
    assert not _hint_after(admin_client_.get(f"/queues/{queue.pk}/").content.decode(), "conflict_rule")
