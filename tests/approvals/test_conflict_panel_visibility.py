"""The conflict panel lists the requests waiting on this one only when the viewer may see them."""

import pytest

from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


def test_a_reviewer_does_not_see_waiting_requests_of_a_queue_they_do_not_review(client):
    crm, payroll = make_queue("crm"), make_queue("payroll")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=crm, order=10)
    make_rule(name="payroll-ask", action_pattern="payroll.*", queue=payroll, order=20)
    rita, paula = make_reviewer(crm, "rita"), make_reviewer(payroll, "paula")
    first = make_request(agent=factories.make_agent("support-bot"), action="crm.update", resource="person:7")
    waiting = make_request(agent=factories.make_agent("hr-bot"), action="payroll.cut_salary", resource="person:7")
    assert waiting.is_held and waiting.conflict_with_id == first.pk

    client.force_login(rita)
    page = client.get(f"/approvals/{first.pk}/").content.decode()
    assert "payroll.cut_salary" not in page and "hr-bot" not in page
    panel = client.get(f"/approvals/{first.pk}/conflict/").content.decode()
    assert "payroll.cut_salary" not in panel and "hr-bot" not in panel

    client.force_login(paula)  # she arbitrates her request and sees both sides
    page = client.get(f"/approvals/{waiting.pk}/").content.decode()
    assert "payroll.cut_salary" in page and "crm.update" in page
