"""Prompt pages: who may see and do what, refine, diff, label moves from the browser."""

import pytest

from agents import services
from agents.models import LabelMove, PromptLabel
from console.models import AuditEntry
from tests.agents.test_prompt_fixtures import add_decisions, add_version, make_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt(admin_user):
    p = make_prompt()
    add_version(p, "Answer {ticket} politely and <b>check</b> policy.")
    services.move_label(prompt=p, label="production", version=p.versions.get(number=1), actor=admin_user)
    return p


READ_PAGES = ["/prompts/", "/prompts/support-reply/", "/prompts/support-reply/v1/",
              "/prompts/support-reply/v2/?compare=1", "/prompts/support-reply/diff/?a=1&b=2"]


@pytest.mark.parametrize("url", READ_PAGES)
@pytest.mark.parametrize("role, status", [("anonymous", 302), ("none", 403), ("reviewer", 200),
                                          ("operator", 200), ("admin", 200)])
def test_staff_roles_read_prompt_pages(prompt, clients_by_role, url, role, status):
    assert clients_by_role[role].get(url).status_code == status


WRITE_ACTIONS = [
    ("get", "/prompts/support-reply/v1/refine/", {}),
    ("post", "/prompts/support-reply/v1/refine/", {"kind": "text", "template": "x {ticket}", "commit_message": "m"}),
    ("post", "/prompts/support-reply/labels/", {"label": "production", "version": "2"}),
    ("post", "/prompts/support-reply/labels/production/rollback/", {}),
    ("post", "/prompts/support-reply/webhooks/", {"url": "https://x.example/", "secret": "s" * 20}),
    ("post", "/prompts/new/", {"name": "n", "kind": "text", "template": "t", "commit_message": "m"}),
]


@pytest.mark.parametrize("method, url, data", WRITE_ACTIONS)
@pytest.mark.parametrize("role", ["reviewer", "operator", "none"])
def test_only_admins_edit(prompt, clients_by_role, method, url, data, role):
    response = getattr(clients_by_role[role], method)(url, data)
    assert response.status_code == 403
    assert PromptLabel.objects.get(name="production").version.number == 1
    assert prompt.versions.count() == 2


def test_admin_moves_a_label_and_rolls_it_back_from_the_page(prompt, admin_client_):
    response = admin_client_.post("/prompts/support-reply/labels/", {"label": "production", "version": "2",
                                                                     "reason": "looks better"})
    assert response.status_code == 302
    assert PromptLabel.objects.get(name="production").version.number == 2
    page = admin_client_.get("/prompts/support-reply/").content.decode()
    assert "Roll back to v1" in page and "looks better" in page
    admin_client_.post("/prompts/support-reply/labels/production/rollback/")
    assert PromptLabel.objects.get(name="production").version.number == 1
    assert AuditEntry.objects.filter(action="prompt.label_rolled_back", actor="user:ada").exists()


def test_refine_saves_a_new_version_linked_to_its_feedback_and_puts_it_on_canary(prompt, admin_client_):
    v2 = prompt.versions.get(number=2)
    add_decisions(v2, reject=3, category="policy")
    add_decisions(v2, approve=5)
    page = admin_client_.get("/prompts/support-reply/v2/refine/").content.decode()
    assert "policy</strong> × 3" in page
    open_ids = [str(pk) for pk in v2.feedback.filter(verdict="reject").values_list("pk", flat=True)]
    response = admin_client_.post("/prompts/support-reply/v2/refine/", {
        "kind": "text", "template": "Answer {ticket}; refunds over 50 need a manager.", "variables": "ticket",
        "commit_message": "policy on refunds", "answers": open_ids, "to_canary": "on", "canary_share": "15",
    })
    assert response.status_code == 302 and response["Location"] == "/prompts/support-reply/v3/"
    v3 = prompt.versions.get(number=3)
    assert v3.parent == v2 and v3.commit_message == "policy on refunds"
    assert v3.addressed_feedback.count() == 3
    canary = PromptLabel.objects.get(name="canary")
    assert canary.version == v3 and canary.share == 15


def test_refine_with_a_bad_template_names_the_field(prompt, admin_client_):
    response = admin_client_.post("/prompts/support-reply/v2/refine/", {
        "kind": "text", "template": "Hello {customer}", "variables": "ticket", "commit_message": "x"})
    assert response.status_code == 400
    assert "undeclared variables: customer" in response.content.decode()
    assert prompt.versions.count() == 2 and not LabelMove.objects.filter(label="canary").exists()


def test_diff_is_word_level_and_escaped(prompt, reviewer_client):
    html = reviewer_client.get("/prompts/support-reply/diff/?a=1&b=2").content.decode()
    assert "<del>politely.</del>" in html
    assert "<ins>politely and &lt;b&gt;check&lt;/b&gt; policy.</ins>" in html
    assert "<b>check</b>" not in html


def test_version_page_filters_feedback_by_category_and_links_runs(prompt, reviewer_client):
    from agents.models import Feedback

    v1 = prompt.versions.get(number=1)
    add_decisions(v1, reject=2, category="policy")
    add_decisions(v1, reject=1, category="risk")
    Feedback.objects.filter(category="risk").update(trace_id="ab" * 16, approval_id=7, text="<script>x</script>")
    html = reviewer_client.get("/prompts/support-reply/v1/?category=risk").content.decode()
    assert html.count('class="feedback-row"') == 1
    assert f'href="/runs/{"ab" * 16}/"' in html and 'href="/approvals/7/"' in html
    assert "&lt;script&gt;" in html and "<script>x</script>" not in html
    assert reviewer_client.get("/prompts/support-reply/v1/").content.decode().count('class="feedback-row"') == 3


def test_admin_creates_a_prompt(admin_client_, admin_user):
    response = admin_client_.post("/prompts/new/", {"name": "triage", "kind": "text",
                                                    "template": "Triage {ticket}", "commit_message": "first"})
    assert response.status_code == 302
    from agents.models import Prompt

    prompt = Prompt.objects.get(name="triage")
    assert prompt.versions.get().variables == ["ticket"] and list(prompt.owners.all()) == [admin_user]


def test_prompts_nav_link_for_staff(prompt, clients_by_role):
    assert 'href="/prompts/"' in clients_by_role["reviewer"].get("/prompts/").content.decode()


def test_canary_verdicts_show_on_the_list_and_prompt_page(prompt, reviewer_client, fixed_now):
    from agents.models import CanaryVerdict

    v2 = prompt.versions.get(number=2)
    CanaryVerdict.objects.create(prompt=prompt, version=v2, outcome="rolled_back", created_at=fixed_now,
                                 summary="Rolled back automatically: 3/22 approved")
    assert "v2 rolled back automatically" in reviewer_client.get("/prompts/").content.decode()
    page = reviewer_client.get("/prompts/support-reply/").content.decode()
    assert "Rolled back automatically: 3/22 approved" in page


def test_promotion_suggestion_is_offered_to_admins_while_the_canary_is_current(prompt, admin_client_,
                                                                               reviewer_client, admin_user,
                                                                               fixed_now):
    from agents.models import CanaryVerdict

    v2 = prompt.versions.get(number=2)
    services.move_label(prompt=prompt, label="canary", version=v2, actor=admin_user, share=10)
    CanaryVerdict.objects.create(prompt=prompt, version=v2, outcome="promote", created_at=fixed_now,
                                 summary="Significantly better than production")
    assert "Promote v2 to production" in admin_client_.get("/prompts/support-reply/").content.decode()
    reviewer_page = reviewer_client.get("/prompts/support-reply/").content.decode()
    assert 'id="promotion-suggestion"' in reviewer_page and "Promote v2 to production" not in reviewer_page
    assert reviewer_client.post("/prompts/support-reply/promote/").status_code == 403
    admin_client_.post("/prompts/support-reply/promote/")
    assert PromptLabel.objects.get(name="production").version == v2
    assert not PromptLabel.objects.filter(name="canary").exists()
    assert 'id="promotion-suggestion"' not in admin_client_.get("/prompts/support-reply/").content.decode()
