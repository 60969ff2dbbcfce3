"""The conflict panel's explanation is true for the pair at hand, not the rule's name."""

import pytest

from approvals.services import decide_request
from tests.approvals.test_conflicts import ask, bots, crm, fresh, rita  # noqa: F401

pytestmark = pytest.mark.django_db


def _status_line(client, req) -> str:
    html = client.get(req.url_path).content.decode()
    start = html.index('data-testid="conflict-status"')
    return html[start:html.index("</p>", start)]


@pytest.fixture
def waits(crm):  # noqa: F811
    crm.conflict_rule = "higher_risk_waits"
    crm.save()


def test_equal_risk_says_the_later_one_waits(client, waits, bots, rita):  # noqa: F811
    first = ask(bots[0], risk="high")
    later = fresh(ask(bots[1], risk="high"))
    client.force_login(rita)
    line = _status_line(client, later)
    assert f"Waiting until #{first.pk} finishes" in line
    assert "higher risk waits" not in line
    assert "both are high risk, so the later one waits" in line


def test_higher_risk_still_says_higher_risk_waits(client, waits, bots, rita):  # noqa: F811
    ask(bots[0], risk="high")
    later = fresh(ask(bots[1], risk="critical"))
    client.force_login(rita)
    assert "higher risk waits" in _status_line(client, later)


def test_a_lower_risk_one_behind_an_approved_one_is_not_called_higher_risk(client, waits, bots, rita):  # noqa: F811
    first = ask(bots[0], risk="critical")
    decide_request(request_id=first.pk, reviewer=rita, verdict="approve", reason="ok")
    later = fresh(ask(bots[1], risk="low"))
    client.force_login(rita)
    line = _status_line(client, later)
    assert "higher risk waits" not in line and "already decided or being decided" in line
