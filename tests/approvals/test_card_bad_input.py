"""The card's live re-GET carries the approvals count the page shows; any junk there is ignored, never a 500."""

import pytest

from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("shown", ["²", "١", "x", "-1", "", "99999"])
def test_a_junk_approvals_count_on_the_card_is_ignored(client, shown):
    queue = make_queue("prod")
    make_rule(name="two", action_pattern="db.*", queue=queue, required_approvals=2)
    req = make_request(action="db.migrate", risk="critical")
    client.force_login(make_reviewer(queue, "rita"))
    response = client.get(f"/approvals/{req.pk}/card/", {"ctx": "detail", f"given-{req.pk}": shown})
    assert response.status_code == 200
    assert f'id="request-{req.pk}"'.encode() in response.content
