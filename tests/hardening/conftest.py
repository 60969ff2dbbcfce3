"""A small world for the hardening tests: two agents with keys, runs and requests, queues, a prompt."""

from dataclasses import dataclass

import pytest
from django.test import Client

from approvals import services as approval_services
from approvals.models import ApprovalRequest, GuardianRule, Outcome, Queue
from console.roles import Role
from tests import factories
from tests.traces.helpers import protobuf_body, record_agent_run
from traces import ingest, pricing, redaction
from traces.models import Run, Span


@dataclass
class World:
    reviewer: object       # member of queue ``billing``
    stranger: object       # reviewer of queue ``ops`` only
    operator: object
    admin: object
    nobody: object
    agent: object          # "billing-bot": the agent under test
    other_agent: object    # "rival-bot": its data must stay invisible to ``agent``'s key
    key: str
    other_key: str
    spare_key: object      # a key row of ``agent`` an admin may revoke in a test
    queue: Queue
    other_queue: Queue
    request: ApprovalRequest        # pending, agent's, in ``billing``
    other_request: ApprovalRequest  # pending, other_agent's, in ``ops``
    rule: GuardianRule
    run: Run
    other_run: Run
    prompt_name: str
    span_id: str

    def client(self, role: str) -> Client:
        if role == "anonymous":
            return Client()
        if role == "agent_key":
            return Client(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        user = {"none": self.nobody, "reviewer": self.reviewer, "stranger": self.stranger,
                "operator": self.operator, "admin": self.admin}[role]
        client = Client()
        client.force_login(user)
        return client


def ingest_run(agent, **kwargs) -> None:
    """Store a small SDK-made run for ``agent`` through the decode and ingest services (no HTTP, so it
    also works beside a browser test's event loop)."""
    from datetime import timedelta

    from django.utils import timezone

    from traces import otlp, services

    export = otlp.parse_protobuf(protobuf_body(record_agent_run(**kwargs)))
    decoded = otlp.decode(export, now=timezone.now(), max_future=timedelta(hours=1), text_limit=32 * 1024)
    assert decoded.spans and not decoded.rejected
    services.ingest_spans(agent=agent, spans=decoded.spans)


def pending_request(agent, queue: Queue, **fields) -> ApprovalRequest:
    new = approval_services.NewRequest(
        action=f"{queue.name}.{fields.pop('action', 'refund')}", risk=fields.pop("risk", "high"),
        arguments=fields.pop("arguments", {"amount": 120}), summary=fields.pop("summary", "Refund order 42"),
        **fields)
    req, _created = approval_services.create_request(agent=agent, new=new)
    assert req.queue_id == queue.pk, "the world's rule routes this action to its queue"
    return req


@pytest.fixture(autouse=True)
def _fresh_trace_caches():
    pricing.invalidate_cache()
    redaction.invalidate_cache()
    ingest.rate_limiter.reset()
    yield
    pricing.invalidate_cache()
    redaction.invalidate_cache()


@pytest.fixture
def world(db) -> World:
    from agents import services as agent_services

    reviewer = factories.make_user(Role.REVIEWER, username="rita")
    stranger = factories.make_user(Role.REVIEWER, username="sam")
    operator = factories.make_user(Role.OPERATOR, username="otto")
    admin = factories.make_user(Role.ADMIN, username="ada")
    nobody = factories.make_user(None, username="nora")
    agent = factories.make_agent("billing-bot")
    other_agent = factories.make_agent("rival-bot")
    _k, key = factories.make_key(agent)
    _k, other_key = factories.make_key(other_agent)
    spare_key, _plain = factories.make_key(agent)
    queue = Queue.objects.create(name="billing")
    queue.members.add(reviewer)
    other_queue = Queue.objects.create(name="ops")
    other_queue.members.add(stranger)
    rule = GuardianRule.objects.create(name="to-billing", action_pattern="billing.*", outcome=Outcome.ASK,
                                       queue=queue, order=10)
    GuardianRule.objects.create(name="to-ops", action_pattern="ops.*", outcome=Outcome.ASK, queue=other_queue,
                                order=11)
    request = pending_request(agent, queue)
    other_request = pending_request(other_agent, other_queue)
    ingest_run(agent)
    ingest_run(other_agent, task="Rival secret task")
    prompt_name = "refund-agent"
    agent_services.create_prompt(name=prompt_name, actor=admin, template="Refund {{ order }} politely.",
                                 variables=["order"])
    run = Run.objects.get(agent=agent)
    return World(
        reviewer=reviewer, stranger=stranger, operator=operator, admin=admin, nobody=nobody, agent=agent,
        other_agent=other_agent, key=key, other_key=other_key, spare_key=spare_key, queue=queue,
        other_queue=other_queue, request=request, other_request=other_request, rule=rule,
        run=run, other_run=Run.objects.get(agent=other_agent), prompt_name=prompt_name,
        span_id=Span.objects.filter(run=run).order_by("seq").values_list("span_id", flat=True).first(),
    )
