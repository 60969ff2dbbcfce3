"""Agent keys are read from ``Authorization`` by one parser: the API and trace ingest agree on every header."""

import pytest

from tests import factories
from tests.traces import helpers

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("template, accepted", [
    ("Bearer {key}", True),
    ("bearer {key}", True),
    ("Bearer  {key} ", True),  # spaces around the key: ninja's own parser made this a 401 on /api/v1
    ("Basic {key}", False),
    ("Bearer", False),
    ("Bearer ", False),
    ("{key}", False),
])
def test_the_api_and_trace_ingest_accept_the_same_authorization_headers(client, template, accepted):
    _key, plain = factories.make_key(factories.make_agent())
    header = template.format(key=plain)

    api = client.get("/api/v1/whoami", HTTP_AUTHORIZATION=header)
    ingest = client.generic("POST", "/v1/traces", helpers.protobuf_body(helpers.record_agent_run()),
                            content_type=helpers.PROTOBUF, HTTP_AUTHORIZATION=header)

    assert (api.status_code, ingest.status_code) == ((200, 200) if accepted else (401, 401))
