"""The canary guard: compare a canary with production; roll back a worse one, suggest promoting a better one."""

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from agents.models import CanaryOutcome, CanaryVerdict, LabelMove, LabelName, PromptLabel
from agents.prompts import scorecard, stats
from agents.prompts.labels import remove_label
from console.live import on_commit

log = logging.getLogger(__name__)

GUARD_ACTOR = "system:canary-guard"


def min_sample() -> int:
    return int(getattr(settings, "PROMPTS_CANARY_MIN_SAMPLE", 20))


class _Abort(Exception):
    pass


def stint_start(label: PromptLabel) -> LabelMove | None:
    """The move that began the canary's current stint on its version (later share changes continue it)."""
    start = None
    for move in LabelMove.objects.filter(prompt=label.prompt_id, label=LabelName.CANARY).order_by("-id"):
        if move.to_version_id != label.version_id:
            break
        start = move
    return start


def evaluate(label: PromptLabel, production: PromptLabel, *, now: datetime) -> dict | None:
    """Compare the canary with production over the canary's stint: approval rate (decisions) and
    runs with an incident, each only once both sides reach the minimum sample. None: nothing to judge.

    Production's decisions are taken from the same period when there are enough (same traffic,
    same time), else from all time.
    """
    start = stint_start(label)
    if start is None:
        return None
    since = start.created_at
    details = {"stint_started_by": start.pk, "approval": _approval_check(label, production, since, now),
               "incidents": _incident_check(label, production, since, now)}
    approval, incidents = details["approval"], details["incidents"]
    judged_incidents = bool(incidents and "p_value" in incidents)
    if approval is None and not judged_incidents:
        return None
    worse = bool(approval and approval["significant"] and approval["direction"] == "worse")
    worse = worse or bool(incidents and incidents["significantly_worse"])
    better = bool(approval and approval["significant"] and approval["direction"] == "better")
    details["verdict"] = (CanaryOutcome.ROLLED_BACK if worse
                          else CanaryOutcome.PROMOTION_SUGGESTED if better else None)
    parts = []
    if approval:
        parts.append(approval["summary"])
    if judged_incidents:
        (ck, cn), (pk_, pn) = incidents["canary"], incidents["production"]
        parts.append(f"Runs with an incident: canary {ck}/{cn} vs production {pk_}/{pn} "
                     f"(p = {incidents['p_value']:.3f}).")
    details["summary"] = " ".join(parts)
    return details


def _approval_check(label, production, since, now) -> dict | None:
    ck, cn = scorecard.approval_counts(scorecard.decision_counts(label.version, since=since, until=now))
    pk_, pn = scorecard.approval_counts(scorecard.decision_counts(production.version, since=since, until=now))
    window = "since the canary started"
    if pn < min_sample():
        pk_, pn = scorecard.approval_counts(scorecard.decision_counts(production.version, until=now))
        window = "all time"
    if cn < min_sample() or pn < min_sample():
        return None
    test = stats.two_proportion_z(ck, cn, pk_, pn)
    p = test[1] if test else 1.0
    return {
        "canary": [ck, cn], "production": [pk_, pn], "window": window, "p_value": p,
        "significant": p < scorecard.ALPHA, "direction": "worse" if ck / cn < pk_ / pn else "better",
        "summary": (f"Canary v{label.version.number}: {ck}/{cn} approved ({ck / cn:.0%}) vs production "
                    f"v{production.version.number}: {pk_}/{pn} ({pk_ / pn:.0%}, {window}); "
                    f"two-proportion z-test p = {p:.3f}."),
    }


def _incident_check(label, production, since, now) -> dict | None:
    """Runs with an incident, canary against production over the canary's stint; None without incidents."""
    ck = scorecard.incident_runs(label.version, since=since, until=now)
    if ck is None:
        return None
    pk_ = scorecard.incident_runs(production.version, since=since, until=now)
    cn = scorecard.finished_runs(label.version, since=since, until=now)
    pn = scorecard.finished_runs(production.version, since=since, until=now)
    result = {"canary": [ck, cn], "production": [pk_, pn], "significantly_worse": False}
    if cn >= min_sample() and pn >= min_sample():
        test = stats.two_proportion_z(min(ck, cn), cn, min(pk_, pn), pn)
        result["p_value"] = test[1] if test else 1.0
        result["significantly_worse"] = bool(test and test[1] < scorecard.ALPHA and test[0] > 0)
    return result


def guard_canaries(*, now: datetime) -> dict:
    """Check every canary once. Idempotent: a verdict row (unique per canary stint and outcome) and a
    conditional label removal make a second run, or a concurrent worker, a no-op."""
    done = {"rolled_back": 0, "suggested": 0}
    canaries = PromptLabel.objects.filter(name=LabelName.CANARY, share__gt=0).select_related("prompt", "version")
    for label in canaries:
        production = PromptLabel.objects.filter(prompt=label.prompt_id, name=LabelName.PRODUCTION) \
            .select_related("version").first()
        if production is None or production.version_id == label.version_id:
            continue
        details = evaluate(label, production, now=now)
        if not details or not details["verdict"]:
            continue
        if details["verdict"] == CanaryOutcome.ROLLED_BACK:
            done["rolled_back"] += _roll_back(label, production, details, now)
        else:
            done["suggested"] += _suggest(label, production, details, now)
    return done


def _roll_back(label, production, details, now) -> int:
    summary = "Rolled back automatically: significantly worse than production. " + details["summary"]
    try:
        with transaction.atomic():
            verdict = CanaryVerdict.objects.create(prompt=label.prompt, version=label.version,
                                                   started_by_id=details["stint_started_by"],
                                                   baseline=production.version, outcome=CanaryOutcome.ROLLED_BACK,
                                                   summary=summary, details=details, created_at=now)
            move = remove_label(prompt=label.prompt, label=LabelName.CANARY, actor=GUARD_ACTOR, reason=summary,
                                is_rollback=True, only_if_version=label.version, at=now)
            if move is None:  # an Admin moved it meanwhile: nothing to roll back
                raise _Abort
            _notify_owners(verdict, now)
    except (IntegrityError, _Abort):
        return 0
    return 1


def _suggest(label, production, details, now) -> int:
    summary = "Significantly better than production: consider promoting it. " + details["summary"]
    try:
        with transaction.atomic():
            verdict = CanaryVerdict.objects.create(prompt=label.prompt, version=label.version,
                                                   started_by_id=details["stint_started_by"],
                                                   baseline=production.version,
                                                   outcome=CanaryOutcome.PROMOTION_SUGGESTED,
                                                   summary=summary, details=details, created_at=now)
            _notify_owners(verdict, now)
    except IntegrityError:
        return 0
    return 1


def _notify_owners(verdict: CanaryVerdict, now: datetime) -> None:
    """Tell the prompt's owners: in-app and e-mail through the console's notification outbox when
    it is there (rows in this transaction, sent with retries), else by e-mail after commit."""
    owners = list(verdict.prompt.owners.filter(is_active=True))
    if not owners:
        return
    title = (f"Prompt {verdict.prompt.name} v{verdict.version.number}: "
             f"{verdict.get_outcome_display().lower()}")
    path = f"/prompts/{verdict.prompt.name}/"
    try:
        from traces.watchers.playbooks import notify_users
    except ImportError:
        notify_users = None
    if notify_users is not None:
        try:
            with transaction.atomic():
                notify_users(users=owners, title=title, url_path=path, summary=verdict.summary,
                             event=f"prompt.canary_{verdict.outcome}", now=now)
            return
        except Exception:  # noqa: BLE001 - the verdict stands; fall back to plain e-mail
            log.warning("notification outbox unavailable for prompt %s", verdict.prompt.name, exc_info=True)
    recipients = [u.email for u in owners if u.email]
    body = f"{verdict.summary}\n\n{settings.CONSOLE_BASE_URL}{path}\n"
    on_commit(lambda: _mail(title, body, recipients))


def _mail(subject: str, body: str, recipients: list) -> None:
    if not recipients:
        return
    try:
        send_mail(f"[console] {subject}", body, None, recipients)
    except Exception:  # noqa: BLE001 - the verdict is recorded and shown; mail is best effort
        log.warning("could not e-mail %s", recipients, exc_info=True)
