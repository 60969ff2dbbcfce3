"""The four demo agents. Each ``work`` is one run: spans, tool calls, and approval requests."""

from agents.client import Prompt
from agents.fleet import texts
from agents.fleet.sim import SimAgent

SHARED_RESOURCE = "crm:customer:42"
REFUND_APPROVAL_ABOVE = 500


class SupportBot(SimAgent):
    """Answers tickets; refunds above 500 EUR ask approval (risk high)."""

    name = "support-bot"
    prompt_name = "support-reply"
    builtin_prompts = {"1": texts.SUPPORT_PROMPT_V1, "2": texts.SUPPORT_PROMPT_V2}
    run_gap_s = (4.0, 8.0)

    def choose_task(self) -> dict:
        t = texts.ticket(self.rng)
        t["shared"] = self.mischief.shared_resource_turn(self.name, ("support-bot", "data-ops"))
        if t["shared"]:
            t["customer_id"], t["amount"] = 42, max(t["amount"], 640)
        t["loop"] = self.mischief.due("loop", chance=0.5)
        # The built-in v2 is the version reviewers dislike: generous refunds, terse summaries.
        t["prompt_version"] = "2" if self.rng.random() < 0.3 else "1"
        t["title"] = f"Answer ticket {t['ticket_id']} from {t['customer']}"
        t["conversation"] = t["ticket_id"]
        return t

    def work(self, t: dict, prompt: Prompt) -> str:
        generous = prompt.source == "default" and prompt.version == "2" or "generous" in prompt.template
        system = prompt.template.split("\n\nTicket")[0]
        self.think(f"Ticket {t['ticket_id']}: customer reports a problem with {t['product']}; "
                   "look up the order before deciding between replacement and refund.")
        args = {"order_id": t["order_id"], "customer_id": t["customer_id"]}
        order = texts.order_record(t, self.rng)
        repeats = self.rng.randint(8, 12) if t["loop"] else 1
        for _ in range(repeats):  # a loop is the same tool with the same arguments, again and again
            self.tool("lookup_order", args, order)
        if t["loop"]:
            return "looped on lookup_order"
        customer = f"crm:customer:{t['customer_id']}"
        self.tool("lookup_customer", {"customer_id": t["customer_id"]},
                  {"customer_id": t["customer_id"], "tier": self.rng.choice(["standard", "gold"]),
                   "open_tickets": self.rng.randint(0, 3)}, resource=customer)
        wants_refund = generous or self.rng.random() < 0.65 or t["shared"]
        refund = None
        if wants_refund:
            refund = t["amount"] + (self.rng.choice([50, 100, 150]) if generous else 0)
        self.llm(system=system, user=t["ticket"] + "\n\nOrder: " + str(order),
                 output="The order is eligible. Plan: " + (f"refund {refund} EUR." if refund else "replacement."),
                 finish="tool_calls", model="gpt-4o-mini")
        if refund is not None and refund > REFUND_APPROVAL_ABOVE:
            summary = (f"Refund {refund} EUR" if generous else
                       f"Refund {refund} EUR for order {t['order_id']} ({t['product']}): customer reports it "
                       f"{'is damaged' if 'crack' in t['ticket'] else 'is faulty or missing'}; paid {t['amount']} EUR")
            resource = customer
            decision = self.ask("refund", {"order_id": t["order_id"], "customer_id": t["customer_id"],
                                           "amount": refund, "currency": "EUR"}, "high", summary,
                                resource=resource, context={"ticket_id": t["ticket_id"], "paid_eur": t["amount"]})
            if decision is None:
                refund = None  # too many refunds already waiting: offer a replacement instead
            elif decision.approved:
                result = self.execute(decision, "issue_refund",
                                      lambda a: {"refund_id": f"RF-{self.rng.randint(10000, 99999)}",
                                                 "amount": a["amount"], "status": "issued"}, resource=customer)
                refund = result["amount"]
                self.state("ticket.refund", {"refunded": 0}, {"refunded": refund})
            elif decision.pending:
                return "refund still waiting for approval"
            else:
                refund = None
        elif refund is not None:
            self.tool("issue_refund", {"order_id": t["order_id"], "amount": refund, "currency": "EUR"},
                      {"refund_id": f"RF-{self.rng.randint(10000, 99999)}", "status": "issued"}, resource=customer)
        reply = texts.support_reply(t, refund, generous)
        self.llm(system=system, user=t["ticket"], output=reply, model="gpt-4o-mini")
        self.tool("send_reply", {"ticket_id": t["ticket_id"], "chars": len(reply)}, {"sent": True})
        self.state("ticket.status", "open", "answered")
        return f"answered ({'refund ' + str(refund) if refund else 'replacement'})"


class DataOps(SimAgent):
    """Writes and runs SQL migrations; production ones are critical."""

    name = "data-ops"
    prompt_name = "migration-planner"
    builtin_prompts = {"1": texts.MIGRATION_PROMPT}
    run_gap_s = (7.0, 14.0)

    def choose_task(self) -> dict:
        shared = self.mischief.shared_resource_turn(self.name, ("support-bot", "data-ops"))
        change = texts.CHANGES[-1] if shared else self.rng.choice(texts.CHANGES[:-1])
        env = "prod" if shared or self.rng.random() < 0.4 else self.rng.choice(["staging", "dev"])
        return {"change": change, "environment": env, "shared": shared,
                "title": f"Migrate: {change[0]} ({env})"}

    def work(self, task: dict, prompt: Prompt) -> str:
        title, _ = task["change"]
        env = task["environment"]
        self.tool("describe_schema", {"tables": ["customers", "orders", "invoices"]},
                  {"customers": 48211, "orders": 1203311, "invoices": 998102})
        sql = texts.migration_sql(task["change"])
        resource = SHARED_RESOURCE if task["shared"] else f"db:{env}-main"
        self.llm(system=prompt.template.split("\n\nChange")[0], user=f"Change request: {title}\nTarget: {env}",
                 output=sql + "\nRisk: low lock time; batches of 10,000 rows.", model="claude-sonnet-4")
        self.tool("dry_run_migration", {"sql": sql, "environment": env},
                  {"ok": True, "estimated_lock_ms": self.rng.randint(5, 900)}, resource=resource)
        arguments = {"sql": sql, "environment": env, "database": f"{env}-main"}
        if env != "prod":
            self.tool("run_migration", arguments, {"applied": True, "rows": self.rng.randint(0, 50000)},
                      resource=resource)
            return f"applied on {env}"
        decision = self.ask("run_migration", arguments, "critical", f"Run migration on prod: {title}",
                            resource=resource)
        if decision is None or decision.pending:
            return "migration waiting for approval"
        if not decision.approved:
            self.think(f"Migration not approved ({decision.status}: {decision.reason}); leave prod untouched.")
            return f"migration {decision.status}"
        self.execute(decision, "run_migration", lambda a: {"applied": True, "rows": self.rng.randint(0, 50000)},
                     resource=resource)
        self.state("schema.version", self.rng.randint(180, 200), "next")
        return "applied on prod"


class DeployBot(SimAgent):
    """Deploys services; production deploys are high risk."""

    name = "deploy-bot"
    prompt_name = "deploy-planner"
    builtin_prompts = {"1": texts.DEPLOY_PROMPT}
    run_gap_s = (8.0, 16.0)

    def choose_task(self) -> dict:
        service = self.rng.choice(texts.SERVICES)
        version = f"v1.{self.rng.randint(10, 60)}.{self.rng.randint(0, 9)}"
        env = "prod" if self.rng.random() < 0.45 else "staging"
        return {"service": service, "version": version, "environment": env,
                "title": f"Deploy {service} {version} to {env}"}

    def work(self, task: dict, prompt: Prompt) -> str:
        service, version, env = task["service"], task["version"], task["environment"]
        checks = self.tool("ci_status", {"service": service, "version": version},
                           {"tests": "passed", "coverage": round(self.rng.uniform(71, 93), 1),
                            "flaky": self.rng.randint(0, 3)})
        changelog = "\n".join(f"- {c}" for c in self.rng.sample(
            ["fix race in retry queue", "bump psycopg to 3.2", "new pricing endpoint", "remove dead feature flag",
             "faster cold start", "log redaction for card numbers"], 3))
        plan = (f"Release {service} {version} to {env}: canary 10% for 10 minutes, watch p99 latency and 5xx "
                f"rate; roll back automatically if 5xx > 1% or p99 > 800 ms. CI: {checks['tests']}.")
        self.llm(system=prompt.template.split("\n\nService")[0],
                 user=f"Service: {service} {version}\nEnvironment: {env}\nChangelog:\n{changelog}",
                 output=plan, model="gpt-4o")
        arguments = {"service": service, "version": version, "environment": env, "canary_percent": 10}
        if env == "prod":
            decision = self.ask("deploy", arguments, "high", f"Deploy {service} {version} to prod (canary 10%)",
                                resource=f"service:{service}")
            if decision is None or decision.pending:
                return "deploy waiting for approval"
            if not decision.approved:
                return f"deploy {decision.status}"
            self.execute(decision, "deploy", lambda a: {"deployed": a["version"], "canary": a["canary_percent"]},
                         resource=f"service:{service}")
        else:
            self.tool("deploy", arguments, {"deployed": version}, lo=1.0, hi=2.5,
                      resource=f"service:{service}:{env}")
        healthy = self.rng.random() > 0.1
        self.tool("health_check", {"service": service, "environment": env},
                  {"p99_ms": self.rng.randint(120, 450) if healthy else 1900, "error_rate": 0.002 if healthy else 0.04},
                  error=None if healthy else "p99 latency 1900 ms above 800 ms")
        self.state(f"{service}.{env}.version", "previous", version if healthy else "rolled back")
        return "deployed" if healthy else "rolled back"


class Researcher(SimAgent):
    """Many LLM calls per run: searching, reading, summarising. Now and then a cost spike."""

    name = "researcher"
    prompt_name = "research-summarize"
    builtin_prompts = {"1": texts.RESEARCH_PROMPT}
    run_gap_s = (6.0, 12.0)

    def choose_task(self) -> dict:
        question = self.rng.choice(texts.QUESTIONS)
        return {"question": question, "spike": self.mischief.due("cost_spike", chance=0.5),
                "title": f"Research: {question[:60]}"}

    def work(self, task: dict, prompt: Prompt) -> str:
        question = task["question"]
        system = prompt.template.split("\n\nQuestion")[0]
        subs = [f"Sub-question {i + 1} of: {question}" for i in range(self.rng.randint(2, 4))]
        self.llm(system=system, user=question, output="\n".join(subs), model="gpt-4o-mini")
        notes = ""
        for i, sub in enumerate(subs):
            docs = self.retrieve(sub, [texts.research_notes(question, self.rng, 2) for _ in range(3)])
            notes = texts.research_notes(question, self.rng, 2 * (i + 1))
            self.llm(system=system, user=sub + "\n\n" + "\n".join(docs), output=notes, model="claude-3-5-haiku")
        if task["spike"]:
            # A cost spike: the whole corpus stuffed into one call to the largest model.
            self.llm(system=system, user=notes * 40, output="Summary of the entire corpus... " + notes,
                     model="claude-opus-4", input_tokens=self.rng.randint(180_000, 400_000),
                     output_tokens=self.rng.randint(8_000, 16_000))
        summary = f"Summary for: {question}\n\n{notes}\n\nConfidence: moderate; sources disagree on effect sizes."
        self.llm(system=system, user=notes, output=summary, model="gpt-4.1")
        self.tool("save_report", {"title": question[:80], "chars": len(summary)}, {"saved": True})
        return "report saved" + (" (cost spike)" if task["spike"] else "")


ALL = {cls.name: cls for cls in (SupportBot, DataOps, DeployBot, Researcher)}
