"""When a four-eyes request completes, the live update on an open request page tells only
outsiders that someone else decided it; the first approver is not alarmed."""

import pytest

from approvals import services
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


def test_the_completed_request_alerts_outsiders_but_not_the_first_approver(client):
    queue = make_queue("prod")
    make_rule(name="prod-two", action_pattern="prod.*", queue=queue, required_approvals=2)
    first, second, third = (make_reviewer(queue, name) for name in ("ann", "bob", "cid"))
    req = make_request(agent=factories.make_agent("ops-bot"), action="prod.migrate", risk="critical")
    assert req.required_approvals == 2
    services.decide_request(request_id=req.pk, reviewer=first, verdict="approve", reason="")
    services.decide_request(request_id=req.pk, reviewer=second, verdict="approve", reason="")

    def live_update_seen_by(user) -> str:
        client.force_login(user)
        return client.get(f"/approvals/{req.pk}/card/", {"ctx": "detail"}, HTTP_HX_REQUEST="true").content.decode()

    for took_part in (first, second):
        html = live_update_seen_by(took_part)
        assert 'data-testid="decision-final"' in html
        assert 'data-testid="decision-conflict"' not in html, took_part.username
    html = live_update_seen_by(third)
    assert 'data-testid="decision-conflict"' in html and "Already approved by ann and bob" in html
