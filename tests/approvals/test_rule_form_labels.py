"""The guardian rule editor names every condition control for a screen reader."""

import re

import pytest

from tests.approvals.test_views_policies import rule_data
from tests.approvals.test_views import HTMX, make_queue

pytestmark = pytest.mark.django_db


def test_each_condition_input_has_a_label_and_each_remove_button_says_which(admin_client_, reviewer):
    queue = make_queue("billing", reviewer)
    html = admin_client_.post("/policies/rules/new/", rule_data(
        queue=str(queue.pk), **{"cond-1-field": "to_domain", "cond-1-op": "in", "cond-1-value": '"example.com"'}),
        **HTMX).content.decode()
    ids = re.findall(r'<(?:input|select)[^>]*name="cond-\d+-(?:field|op|value)"[^>]*id="([^"]+)"', html)
    ids += re.findall(r'<(?:input|select)[^>]*id="([^"]+)"[^>]*name="cond-\d+-(?:field|op|value)"', html)
    assert len(set(ids)) == 6  # two condition rows, three controls each
    for control_id in set(ids):
        assert re.search(rf'<label[^>]*for="{re.escape(control_id)}"[^>]*>[^<]+</label>', html), control_id
    assert "Remove<span class=\"visually-hidden\"> condition 2</span>" in html
