"""Detectors: settings (defaults + admin rows), and the pure checks.

Stream checks work on one run's newly stored spans plus a bounded window of its
latest spans (read through the ``(run, seq)`` index); window checks work on one
agent's recent runs. Each returns :class:`Finding` objects; opening the incident
(once, under the ledger's unique key) is ``services.open_incident``.
"""

import json
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field

from traces.incident_models import ActionKind, DetectorConfig, DetectorKind

log = logging.getLogger(__name__)

K = DetectorKind
A = ActionKind

DEFAULTS: dict[str, dict] = {
    K.LOOP: {"params": {"repeats": 5, "max_cycle": 4, "window": 60, "ignore_keys": []},
             "actions": [A.NOTIFY, A.PAUSE]},
    K.RUN_COST: {"params": {"k": 3.0, "min_runs": 20, "max_cost": None},
                 "actions": [A.NOTIFY, A.REQUIRE_APPROVAL]},
    K.BUDGET: {"params": {"budget": None, "window_s": 3600, "throttle_per_s": 1},
               "actions": [A.NOTIFY, A.THROTTLE]},
    K.LATENCY: {"params": {"window_s": 900, "min_runs": 10, "z": 4.0, "min_ratio": 1.5, "min_baseline_runs": 30},
                "actions": [A.NOTIFY]},
    K.ERROR_RATE: {"params": {"window_s": 900, "min_runs": 10, "margin": 0.15, "sigmas": 3.0,
                              "min_baseline_runs": 30},
                   "actions": [A.NOTIFY, A.ROLLBACK_PROMPT]},
    K.SCORE: {"params": {"checks": []}, "actions": [A.NOTIFY, A.REQUIRE_APPROVAL]},
    # max_idle_seconds: an unfinished run with no span for this long is abandoned (its agent crashed or
    # restarted), not running away; the time check leaves it alone.
    K.RUNAWAY: {"params": {"max_spans": 1000, "max_seconds": 1800, "max_idle_seconds": 600},
                "actions": [A.NOTIFY, A.PAUSE]},
    K.CONFLICT: {"params": {"window_s": 300}, "actions": [A.NOTIFY, A.REQUIRE_APPROVAL]},
}

MAX_PARAM = 1e9  # seconds (31 years) or counts: anything larger is a typo, and overflows a timedelta


def check_params(kind: str, params: dict) -> None:
    """Raise ValueError naming the parameter if one that is a number by default is not a number from 0
    to MAX_PARAM (None too where the default is None: "no limit"). Other parameters are not checked here."""
    for name, default in DEFAULTS[kind]["params"].items():
        if name in params and not _param_ok(params[name], default):
            raise ValueError(f"{name} must be a number from 0 to {MAX_PARAM:.0f}, not {json.dumps(params[name])[:50]}")


def _param_ok(value, default) -> bool:
    """Whether ``value`` may stand for a parameter whose default is ``default`` (see check_params)."""
    if value is None and default is None:
        return True
    if default is not None and not isinstance(default, int | float):
        return True  # not a number by default: not checked here
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and (isinstance(value, int) or math.isfinite(value)) and 0 <= value <= MAX_PARAM


SCORE_OPS = {">": lambda v, t: v > t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t,
             "<=": lambda v, t: v <= t}


@dataclass
class Settings:
    kind: str
    enabled: bool
    params: dict
    actions: list
    config_id: int | None = None


@dataclass
class Finding:
    kind: str
    agent_id: int
    dedupe_key: str
    title: str
    evidence: dict = field(default_factory=dict)
    run_id: int | None = None
    trace_id: str = ""


# --- settings, cached per process for a few seconds ---------------------------------------------

CACHE_TTL_S = 5.0
_cache_lock = threading.Lock()
_cache: dict = {"at": -1e9, "rows": {}}


def invalidate_cache() -> None:
    with _cache_lock:
        _cache["at"] = -1e9


def _rows() -> dict:
    with _cache_lock:
        if time.monotonic() - _cache["at"] < CACHE_TTL_S:
            return _cache["rows"]
    rows = {(c.kind, c.agent_id): c for c in DetectorConfig.objects.all()}
    with _cache_lock:
        _cache["rows"], _cache["at"] = rows, time.monotonic()
    return rows


def settings_for(kind: str, agent_id: int | None) -> Settings:
    """The agent's row, else the global row, over the defaults (params merged key by key)."""
    rows = _rows()
    default = DEFAULTS[kind]
    params = dict(default["params"])
    actions = list(default["actions"])
    enabled, config_id = True, None
    for row in (rows.get((kind, None)), rows.get((kind, agent_id)) if agent_id else None):
        if row is None:
            continue
        params.update(row.params or {})
        if row.actions is not None:
            actions = [a for a in row.actions if a in ActionKind.values]
        enabled, config_id = row.enabled, row.pk
    for name, value in default["params"].items():
        if not _param_ok(params[name], value):  # stored unchecked (Django admin, an older version)
            _warn_bad_param(kind, name, params[name])
            params[name] = value
    return Settings(kind=kind, enabled=enabled, params=params, actions=actions, config_id=config_id)


_warned_params: set[tuple[str, str]] = set()


def _warn_bad_param(kind: str, name: str, value) -> None:
    if (kind, name) not in _warned_params:  # once per process, not on every check
        _warned_params.add((kind, name))
        log.warning("detector %s: stored %s=%s is not a number from 0 to %.0f; using the default", kind, name,
                    json.dumps(value, default=str)[:50], MAX_PARAM)


# --- robust statistics --------------------------------------------------------------------------


def median_mad(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    med = statistics.median(values)
    return med, statistics.median(abs(v - med) for v in values)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --- loops ----------------------------------------------------------------------------------------


def normalise(value, ignore: frozenset = frozenset()):
    """Arguments compared modulo key order, case and whitespace of strings, and ignored keys."""
    if isinstance(value, str):
        return " ".join(value.lower().split())  # trimmed, each run of whitespace one space
    if isinstance(value, dict):
        # key order is left to the signature's sort_keys
        return {k: normalise(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list):
        return [normalise(v, ignore) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_SIGNATURE_JSON = json.JSONEncoder(sort_keys=True, default=str)  # built once: json.dumps builds one a call


def step_signature(tool_name: str, arguments, ignore: frozenset = frozenset()) -> str:
    return f"{tool_name}({_SIGNATURE_JSON.encode(normalise(arguments, ignore))})"


def find_loop(steps: list[tuple[str, str]], *, repeats: int, max_cycle: int) -> dict | None:
    """``steps`` are (signature, span_id) oldest first. A loop is one signature seen ``repeats`` times,
    or the latest ``L`` steps (2 <= L <= max_cycle, not all alike) repeated back to back ``repeats`` times."""
    if repeats < 2 or not steps:
        return None
    sigs = [s for s, _ in steps]
    for length in range(2, max_cycle + 1):  # a cycle says more than its steps' counts: look for it first
        need = length * repeats
        if len(sigs) < need:
            break
        cycle = sigs[-length:]
        if len(set(cycle)) < 2:
            continue
        if all(sigs[-need + i] == cycle[i % length] for i in range(need)):
            return {"pattern": cycle, "repeats": repeats, "span_ids": [i for _, i in steps[-need:]][-50:]}
    counts: dict[str, list[str]] = {}
    for sig, span_id in steps:
        counts.setdefault(sig, []).append(span_id)
    sig, ids = max(counts.items(), key=lambda item: len(item[1]))
    if len(ids) >= repeats:
        return {"pattern": [sig], "repeats": len(ids), "span_ids": ids[-50:]}
    return None


# --- scores ---------------------------------------------------------------------------------------


def score_crossings(attributes: dict, checks: list[dict]) -> list[dict]:
    """The checks an attribute set crosses: [{"attribute", "op", "threshold", "value"}]."""
    crossed = []
    for check in checks or []:
        name, op = check.get("attribute"), check.get("op", ">")
        if not name or op not in SCORE_OPS:
            continue
        value = (attributes or {}).get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value) if isinstance(value, str) else None
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            continue
        threshold = float(check.get("threshold", 0))
        if SCORE_OPS[op](value, threshold):
            crossed.append({"attribute": name, "op": op, "threshold": threshold, "value": value})
    return crossed


# --- regressions ----------------------------------------------------------------------------------


def latency_regressed(window_ms: list[float], *, base_median: float, base_mad: float, z: float,
                      min_ratio: float, min_runs: int) -> dict | None:
    """The window's median run duration against the baseline's median/MAD (robust z-score)."""
    if len(window_ms) < min_runs or base_median <= 0:
        return None
    observed = statistics.median(window_ms)
    scale = max(1.4826 * base_mad, 0.05 * base_median, 1.0)
    score = (observed - base_median) / scale
    if score >= z and observed >= base_median * min_ratio:
        return {"observed_median_ms": observed, "baseline_median_ms": base_median,
                "baseline_mad_ms": base_mad, "robust_z": round(score, 2), "runs": len(window_ms)}
    return None


def error_rate_regressed(errors: int, runs: int, *, base_rate: float, margin: float, sigmas: float,
                         min_runs: int) -> dict | None:
    """The window's error rate above the baseline by ``margin`` and ``sigmas`` binomial standard errors."""
    if runs < min_runs:
        return None
    observed = errors / runs
    p = min(max(base_rate, 0.01), 0.99)
    limit = base_rate + max(margin, sigmas * math.sqrt(p * (1 - p) / runs))
    if observed > limit:
        return {"observed_rate": round(observed, 4), "baseline_rate": round(base_rate, 4),
                "limit": round(limit, 4), "runs": runs, "errors": errors}
    return None
