"""HTML routes of the approvals app: /approvals/ (reviewers), /queues/ and /policies/ (Admins)."""

from django.urls import path

from approvals.views import conflicts, overview, policies, requests

app_name = "approvals"

urlpatterns = [
    path("approvals/", requests.my_queue, name="my_queue"),
    path("approvals/overview/", overview.overview, name="overview"),
    path("approvals/<int:pk>/", requests.detail, name="detail"),
    path("approvals/<int:pk>/card/", requests.card, name="card"),
    path("approvals/<int:pk>/claim/", requests.claim, name="claim"),
    path("approvals/<int:pk>/release/", requests.release, name="release"),
    path("approvals/<int:pk>/decide/", requests.decide, name="decide"),
    path("approvals/<int:pk>/conflict/", conflicts.panel, name="conflict"),
    path("approvals/<int:pk>/arbitrate/", conflicts.arbitrate, name="arbitrate"),
    path("queues/", policies.queue_list, name="queues"),
    path("queues/<int:pk>/", policies.queue_edit, name="queue_edit"),
    path("queues/<int:pk>/matrix/", policies.matrix_edit, name="matrix"),
    path("queues/<int:pk>/matrix/reapply/", policies.matrix_reapply, name="matrix_reapply"),
    path("policies/", policies.policies_index, name="policies"),
    path("policies/rules/", policies.rule_list, name="rules"),
    path("policies/rules/new/", policies.rule_edit, name="rule_create"),
    path("policies/rules/dry-run/", policies.rules_dry_run, name="rules_dry_run"),
    path("policies/rules/<int:pk>/", policies.rule_edit, name="rule_edit"),
    path("policies/rules/<int:pk>/toggle/", policies.rule_toggle, name="rule_toggle"),
    path("policies/rules/<int:pk>/delete/", policies.rule_delete, name="rule_delete"),
]
