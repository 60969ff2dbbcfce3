"""Wire an agent into the console: traces, a prompt version, and a refund that waits for a human.

    python manage.py demo                                   # the console, in another terminal
    export CONSOLE_KEY=$(python manage.py create_agent_key billing-bot)
    python -m agents.client.example                         # then decide it in the browser
"""

import os

from agents.client import ApprovalError, Console, use_prompt

console = Console(os.environ.get("CONSOLE_URL", "http://127.0.0.1:8000"), os.environ["CONSOLE_KEY"])
provider = console.setup_tracing("billing-bot")  # OTLP/HTTP to <url>/v1/traces with the key
tracer = provider.get_tracer("billing-bot")

# The version the console serves now (production label, canary share honoured); a fallback if none.
prompt = console.get_prompt("support-reply", default="You are a careful support agent. {ticket}")


@console.guarded("notes.add", risk="low", summary=lambda a: f"Note on {a['ticket']}")
def add_note(ticket: str, text: str) -> dict:
    return {"ticket": ticket, "saved": len(text)}  # runs only if approved, with the approved arguments


with use_prompt(prompt), tracer.start_as_current_span(
        "invoke_agent billing-bot", attributes={"console.task": "Refund a damaged espresso machine"}):
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 96}):
        plan = {"order_id": "NW-100017", "customer_id": 42, "amount": 700, "currency": "EUR"}

    # Ask first; the console answers at once (a rule) or a reviewer decides in the browser.
    decision = console.request_approval(
        "refund", plan, risk="high", summary="Refund 700 EUR: espresso machine arrived cracked",
        resource="crm:customer:42", wait=False)
    print(f"refund {decision.status}; decide it at {decision.url}")
    decision = console.wait_for_decision(decision, timeout=600)  # ?wait= in chunks, no busy polling
    try:
        decision.raise_for_status()  # ApprovalRejected, ApprovalExpired, AgentPaused, ApprovalPending
    except ApprovalError as refused:
        print("not refunding:", refused)
    else:
        with tracer.start_as_current_span("execute_tool issue_refund", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "issue_refund"}):
            result = {"refund_id": "RF-1", "amount": decision.arguments["amount"]}  # maybe edited by the reviewer
        console.report_execution(decision.id, result=result, digest=decision.digest)  # once
        print("refunded", result["amount"], "EUR" + (" (edited by the reviewer)" if decision.edited else ""))

    print("note:", add_note("T-100017", "Customer sent photos of the crack."))

provider.shutdown()  # flush the last spans
console.close()
