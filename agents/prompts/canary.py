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
    """Compare the canary's decisions since its stint began with production's; None until both
    reach the minimum sample.

    Production is measured over the same period when it has enough decisions there (same
    traffic, same time), else over all its decisions.
    """
    start = stint_start(label)
    if start is None:
        return None
    since = start.created_at
    ck, cn = scorecard.approval_counts(scorecard.decision_counts(label.version, since=since, until=now))
    pk_, pn = scorecard.approval_counts(scorecard.decision_counts(production.version, since=since, until=now))
    window = "since the canary started"
    if pn < min_sample():
        pk_, pn = scorecard.approval_counts(scorecard.decision_counts(production.version, until=now))
        window = "all time"
    if cn < min_sample() or pn < min_sample():
        return None
    result = stats.two_proportion_z(ck, cn, pk_, pn)
    p = result[1] if result else 1.0
    details = {"stint_started_by": start.pk,
               "canary": {"version": label.version.number, "approved": ck, "decided": cn},
               "production": {"version": production.version.number, "approved": pk_, "decided": pn,
                              "window": window},
               "p_value": p, "alpha": scorecard.ALPHA}
    verdict = None
    if p < scorecard.ALPHA:
        verdict = CanaryOutcome.ROLLED_BACK if ck / cn < pk_ / pn else CanaryOutcome.PROMOTION_SUGGESTED
    details["incidents"] = _incident_check(label, production, since, now)
    if details["incidents"] and details["incidents"]["significantly_worse"]:
        verdict = CanaryOutcome.ROLLED_BACK
    details["verdict"] = verdict
    details["summary"] = (
        f"Canary v{label.version.number}: {ck}/{cn} approved ({ck / cn:.0%}) vs production "
        f"v{production.version.number}: {pk_}/{pn} ({pk_ / pn:.0%}, {window}); two-proportion z-test p = {p:.3f}.")
    return details


def _incident_check(label, production, since, now) -> dict | None:
    if scorecard.incident_count(label.version, since=since, until=now) is None:
        return None
    c_card = scorecard.build_scorecard(label.version, since=since, until=now).metrics.get("incidents")
    p_card = scorecard.build_scorecard(production.version, since=since, until=now).metrics.get("incidents")
    if not c_card or not p_card or c_card.n < min_sample() or p_card.n < min_sample():
        return {"significantly_worse": False}
    result = stats.two_proportion_z(c_card.successes, c_card.n, p_card.successes, p_card.n)
    worse = bool(result and result[1] < scorecard.ALPHA and result[0] > 0)
    return {"canary": c_card.successes, "production": p_card.successes, "significantly_worse": worse}


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
    except (IntegrityError, _Abort):
        return 0
    on_commit(lambda: _notify_owners(verdict.pk))
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
    except IntegrityError:
        return 0
    on_commit(lambda: _notify_owners(verdict.pk))
    return 1


def _notify_owners(verdict_id: int) -> None:
    verdict = CanaryVerdict.objects.select_related("prompt", "version").get(pk=verdict_id)
    recipients = [u.email for u in verdict.prompt.owners.all() if u.email]
    if not recipients:
        return
    url = f"{settings.CONSOLE_BASE_URL}/prompts/{verdict.prompt.name}/"
    subject = f"[console] prompt {verdict.prompt.name} v{verdict.version.number}: {verdict.get_outcome_display()}"
    try:
        send_mail(subject, f"{verdict.summary}\n\n{url}\n", None, recipients)
    except Exception:  # noqa: BLE001 - the verdict is recorded and shown; mail is best effort
        log.warning("could not e-mail owners of prompt %s", verdict.prompt.name, exc_info=True)
