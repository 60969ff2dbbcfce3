import pytest

from agents import services
from agents.models import PromptLabel
from agents.prompts.labels import bucket_of
from tests import factories
from tests.agents.test_prompt_fixtures import add_version, make_prompt

pytestmark = pytest.mark.django_db

URL = "/api/v1/prompts/support-reply"


@pytest.fixture
def prompt(admin_user):
    p = make_prompt()
    add_version(p, "Reply to {ticket} and offer a refund.")
    services.move_label(prompt=p, label="production", version=p.versions.get(number=1), actor=admin_user)
    return p


def test_agent_gets_the_production_version(client, prompt, agent_headers):
    response = client.get(URL, {"label": "production"}, **agent_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "support-reply" and body["version"] == 1 and body["label"] == "production"
    assert body["template"] == "Answer {ticket} politely." and body["variables"] == ["ticket"]
    assert {"model", "parameters"} <= set(body)
    assert response["ETag"]


def test_etag_gives_304_until_the_version_changes(client, prompt, agent_headers, admin_user):
    first = client.get(URL, **agent_headers)
    etag = first["ETag"]
    again = client.get(URL, HTTP_IF_NONE_MATCH=etag, **agent_headers)
    assert again.status_code == 304 and again["ETag"] == etag and again.content == b""
    assert client.get(URL, HTTP_IF_NONE_MATCH=f"W/{etag}", **agent_headers).status_code == 304
    services.move_label(prompt=prompt, label="production", version=prompt.versions.get(number=2), actor=admin_user)
    moved = client.get(URL, HTTP_IF_NONE_MATCH=etag, **agent_headers)
    assert moved.status_code == 200 and moved.json()["version"] == 2 and moved["ETag"] != etag


def test_unknown_prompt_or_label_is_404_with_a_clear_message(client, prompt, agent_headers):
    missing = client.get("/api/v1/prompts/nope", **agent_headers)
    assert missing.status_code == 404 and "No prompt named 'nope'" in missing.json()["detail"]
    no_label = client.get(URL, {"label": "staging"}, **agent_headers)
    assert no_label.status_code == 404 and "no 'staging' label" in no_label.json()["detail"]


def test_anonymous_is_401_and_a_user_without_role_403(client, prompt, clients_by_role):
    assert client.get(URL).status_code == 401
    assert clients_by_role["none"].get(URL).status_code == 403
    assert clients_by_role["reviewer"].get(URL).status_code == 200


def test_canary_share_is_roughly_honoured_and_stable_per_caller(prompt, admin_user):
    services.move_label(prompt=prompt, label="canary", version=prompt.versions.get(number=2), actor=admin_user,
                        share=10)
    callers = [f"key:aoc_{i:08d}" for i in range(2000)]
    got = [services.resolve_prompt(name="support-reply", caller=c).version.number for c in callers]
    share = got.count(2) / len(got)
    assert 0.08 < share < 0.12
    again = [services.resolve_prompt(name="support-reply", caller=c).version.number for c in callers]
    assert again == got


def test_the_same_key_always_gets_the_same_version_over_http(client, prompt, admin_user):
    services.move_label(prompt=prompt, label="canary", version=prompt.versions.get(number=2), actor=admin_user,
                        share=50)
    seen = {}
    for _ in range(12):
        key_row, plain = factories.make_key()
        versions = {client.get(URL, HTTP_AUTHORIZATION=f"Bearer {plain}").json()["version"] for _ in range(3)}
        assert len(versions) == 1
        expected = 2 if bucket_of(f"key:{key_row.prefix}", "support-reply") < 50 else 1
        assert versions == {expected}
        seen[key_row.prefix] = versions.pop()
    assert set(seen.values()) == {1, 2}  # 12 keys at 50%: both sides show up (fails with p = 2/4096)


def test_run_parameter_buckets_per_run(client, prompt, admin_user, agent_headers):
    services.move_label(prompt=prompt, label="canary", version=prompt.versions.get(number=2), actor=admin_user,
                        share=30)
    for i in range(20):
        trace = f"{i:032x}"
        body = client.get(URL, {"run": trace}, **agent_headers).json()
        expected = "canary" if bucket_of(f"run:{trace}", "support-reply") < 30 else "production"
        assert body["label"] == expected


def test_asking_for_the_canary_label_gets_the_canary(client, prompt, admin_user, agent_headers):
    services.move_label(prompt=prompt, label="canary", version=prompt.versions.get(number=2), actor=admin_user,
                        share=1)
    body = client.get(URL, {"label": "canary"}, **agent_headers).json()
    assert body["version"] == 2 and body["label"] == "canary"


def test_agent_key_cannot_move_labels(client, prompt, agent_headers):
    response = client.post("/prompts/support-reply/labels/", {"label": "production", "version": 2},
                           **agent_headers)
    assert response.status_code in (302, 403)
    assert PromptLabel.objects.get(prompt=prompt, name="production").version.number == 1
    # and there is no API route that moves labels
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(URL, **agent_headers).status_code == 405


def test_the_endpoint_is_in_the_openapi_document(client):
    op = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/prompts/{name}"]["get"]
    assert {"200", "304", "404"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} == {"name", "label", "run"}
