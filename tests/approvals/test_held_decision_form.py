"""A request held by a conflict offers what a reviewer can do with it: reject."""

import pytest

from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


def test_a_held_request_shows_no_argument_editor_only_reject(client):
    crm = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=crm, order=10)
    rita = make_reviewer(crm, "rita")
    agent = factories.make_agent("support-bot")
    first = make_request(agent=agent, action="crm.update", resource="person:7")
    held = make_request(agent=agent, action="crm.delete", resource="person:7")
    assert held.is_held

    client.force_login(rita)
    form = client.get(f"/approvals/{held.pk}/").content.decode()
    form = form[form.index(f'id="decide-{held.pk}"'):]
    form = form[:form.index("</section>")]
    assert 'name="arguments"' not in form and "Approve with edits" not in form
    assert 'value="reject"' in form and 'data-testid="held-no-approve"' in form

    page = client.get(f"/approvals/{first.pk}/").content.decode()  # the holder is decided as usual
    assert 'name="arguments"' in page and "Approve with edits" in page
