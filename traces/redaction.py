"""Redaction of span content before it is stored.

Built-in rules (e-mail, phone, card number, API keys) always apply; admins add
their own :class:`~traces.models.RedactionRule` rows. Each replacement is
counted: per span (``Span.redaction_count``, written with the span) and per rule
(``RedactionRule.hit_count``, added up in memory and flushed by
:func:`flush_hit_counts` outside the ingest transaction, so ingest requests never
queue on one hot counter row).
"""

import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from console.linear_regex import UnsupportedPattern, compile_linear

log = logging.getLogger(__name__)
_warned_backtracking: set[tuple[str, str]] = set()

# name -> (pattern, replacement). Kept in code: built-ins cannot be switched off.
BUILTIN_RULES: dict[str, tuple[str, str]] = {
    "email": (r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}",
              "[REDACTED:email]"),
    "api-key": (
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|aoc_[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpors]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})"
        r"|(?<=Bearer )[A-Za-z0-9._~+/-]{20,}=*",
        "[REDACTED:api-key]"),
    # 13-19 digits, optionally grouped by single spaces or dashes.
    "card-number": (r"\b\d(?:[ -]?\d){12,18}\b", "[REDACTED:card]"),
    # International or North American style numbers; needs 9+ digits so years and ids survive.
    "phone": (r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
              r"|\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4})\b",
              "[REDACTED:phone]"),
}

CACHE_SECONDS = 5.0


# Cheap C-speed checks that must pass before a built-in's regex runs: Python's
# regex engine scans 2 KB of prose in tens of microseconds per pattern, while
# ``in`` and ``bytes.translate`` take about one.
_DIGITISH = b"0123456789 .-()+/"
_WINDOW_TABLE = bytes(100 if b in _DIGITISH else 120 for b in range(256))  # b"d" or b"x"
_MIN_DIGITS = 8  # the shortest phone number the built-in pattern matches has 8 digits
_NINE = b"d" * _MIN_DIGITS
_DIGIT_SEPARATORS = _DIGITISH[10:]
_API_KEY_HINTS = ("sk-", "aoc_", "AKIA", "gho_", "ghp_", "ghu_", "ghs_", "ghr_", "xox", "AIza", "Bearer ")


def _has_at(text: str) -> bool:
    return "@" in text


def _has_key_hint(text: str) -> bool:
    return any(hint in text for hint in _API_KEY_HINTS)


def digit_runs(text: str, raw: bytes | None = None) -> list[tuple[int, int, int]]:
    """(start, end, digits) of each span of ``text`` made of digits and separators holding 8+ digits.

    Card and phone numbers can only occur inside them. ``encode("ascii", "replace")``
    keeps one byte per character, so byte offsets are string offsets (``raw``: that
    encoding, when the caller has it already).
    """
    if raw is None:
        raw = text.encode("ascii", "replace")
    mapped = raw.translate(_WINDOW_TABLE)
    windows = []
    start = mapped.find(_NINE)
    while start >= 0:
        end = mapped.find(b"x", start)
        if end < 0:
            end = len(mapped)
        # the run holds digits and separators only: removing the separators leaves its digits
        digits = len(raw[start:end].translate(None, _DIGIT_SEPARATORS))
        if digits >= _MIN_DIGITS:
            windows.append((max(start - 1, 0), min(end + 1, len(mapped)), digits))  # one character of context
        start = mapped.find(_NINE, end)
    return windows


# Every built-in API key match is a run of 15+ of these characters (the shortest, ``xox?-`` and
# ten more, has 15); prose rarely has such runs, so the key regex only runs on them.
_KEY_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~+/-"
_KEY_TABLE = bytes(107 if b in _KEY_CHARS else 120 for b in range(256))  # b"k" or b"x"
_KEY_RUN = b"k" * 15


def key_windows(raw: bytes) -> list[tuple[int, int]]:
    """Maximal runs of 15+ key characters in ``raw`` (the ASCII-with-replacement encoding of a text)."""
    mapped = raw.translate(_KEY_TABLE)
    windows = []
    start = mapped.find(_KEY_RUN)
    while start >= 0:
        end = mapped.find(b"x", start)
        if end < 0:
            end = len(mapped)
        windows.append((start, end))
        start = mapped.find(_KEY_RUN, end)
    return windows


_HINTS = {"email": _has_at, "api-key": _has_key_hint}

# Looser versions of the API-key, card and phone built-ins for RE2: no \b, no look-around, each
# repetition at its minimum, \d as Python's re reads it on str (any Unicode decimal digit; RE2's \d
# is ASCII). Whatever text a built-in matches holds a match of its loose version, so when none of
# them matches a span (one linear scan, a few µs), neither can the built-ins, and may_match skips its
# windows (two translations and a find per window, and a regex search on each).
_D = r"\p{Nd}"
_LOOSE_PATTERNS = {
    "api-key": (r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16}|aoc_[A-Za-z0-9_-]{20}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30}"
                r"|xox[abpors]-[A-Za-z0-9-]{10}|AIza[0-9A-Za-z_-]{35}|Bearer [A-Za-z0-9._~+/-]{20}"),
    "card-number": rf"{_D}(?:[ -]?{_D}){{12}}",
    "phone": rf"\({_D}{{2,4}}\)[ .-]?{_D}{{3,4}}[ .-]?{_D}{{3,4}}|{_D}{{2,4}}[ .-]{_D}{{3,4}}[ .-]{_D}{{3,4}}",
}
_WINDOWED = {"card-number", "phone"}


def luhn_ok(number: str) -> bool:
    """The card-number checksum: order ids and timestamps of card length almost never pass it."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VALIDATORS = {"card-number": luhn_ok}  # built-in rules whose matches must also pass a check
# Windowed built-ins that need more digits in one window than every window has: a card number has 13-19
# digits joined by single spaces or dashes, all inside one run of a window.
_MIN_WINDOW_DIGITS = {"card-number": 13}


@dataclass(frozen=True)
class _Rule:
    name: str
    regex: re.Pattern
    replacement: str
    hint: object  # callable(text) -> bool, or None
    windowed: bool = False  # only ever matches inside digit_runs()
    validate: object = None  # callable(match text) -> bool: only matches it accepts are replaced
    min_digits: int = 0  # windowed: only windows with this many digits can hold a match

    def subn(self, text: str) -> tuple[str, int]:
        if self.validate is None:
            return self.regex.subn(self.replacement, text)
        replaced = 0

        def replace(match: re.Match) -> str:
            nonlocal replaced
            if not self.validate(match.group(0)):
                return match.group(0)
            replaced += 1
            return match.expand(self.replacement)

        return self.regex.sub(replace, text), replaced


class Redactor:
    """Applies each active rule in turn; thread-safe to use."""

    def __init__(self, rules: list[tuple[str, str, str]], *, builtin_names=frozenset(BUILTIN_RULES)):
        self.rules: list[_Rule] = []
        for name, pattern, replacement in rules:
            # (by name and pattern: an admin rule never runs on ``re``, whatever it is called)
            builtin = name in builtin_names and BUILTIN_RULES.get(name, (pattern,))[0] == pattern
            try:
                # An admin's pattern runs on RE2 (linear time): with ``re`` an agent could stall ingest
                # with text that makes the pattern backtrack. The built-ins are ours and stay on ``re``.
                regex = re.compile(pattern) if builtin else compile_linear(pattern)
            except UnsupportedPattern:
                # Saved before patterns were checked for RE2: redacting with ``re`` beats leaking the value.
                if (name, pattern) not in _warned_backtracking:  # once per process, not per rebuild
                    _warned_backtracking.add((name, pattern))
                    log.warning("redaction rule %r runs on Python's re (RE2 cannot run it): edit it to a "
                                "linear-time pattern", name)
                try:
                    regex = re.compile(pattern)
                except re.error:
                    continue
            except re.error:
                continue  # an invalid admin rule must not stop ingest; the admin form rejects it
            # A literal backslash in the replacement is meant literally, not as a group reference.
            self.rules.append(_Rule(name, regex, replacement.replace("\\", "\\\\"),
                                    _HINTS.get(name) if builtin else None, builtin and name in _WINDOWED,
                                    _VALIDATORS.get(name) if builtin else None,
                                    _MIN_WINDOW_DIGITS.get(name, 0) if builtin else 0))
        self._custom = any(rule.hint is None and not rule.windowed for rule in self.rules)
        # may_match's checks by kind (its answer does not depend on the rules' order)
        self._hints = [rule.hint for rule in self.rules if rule.hint is not None and rule.hint is not _has_key_hint]
        self._key_searches = [rule.regex.search for rule in self.rules if rule.hint is _has_key_hint]
        self._window_searches = [(rule.regex.search, rule.min_digits) for rule in self.rules if rule.windowed]
        loose = [_LOOSE_PATTERNS[rule.name] for rule in self.rules if rule.windowed or rule.hint is _has_key_hint]
        self._loose_search = compile_linear("|".join(f"(?:{p})" for p in loose)).search if loose else None

    @property
    def has_custom_rules(self) -> bool:
        return self._custom

    def may_match(self, blob: str) -> bool:
        """False only when no rule can match any of a span's strings, joined by NUL into ``blob``.

        Built-in rules are checked by their C-speed hints; API keys, card and phone
        numbers first by their loose versions on RE2 (``_LOOSE_PATTERNS``), all at once,
        which on most spans is the end of it, then by their regexes, API keys on the few
        runs of key characters only, card and phone numbers on the few digit windows
        only; custom rules always say maybe. NUL is neither a word, digit nor key
        character, so a window or word boundary never spans two strings: a string
        matches only if its part of the blob does.
        """
        if self._custom:
            return True
        for hint in self._hints:
            if hint(blob):
                return True
        # (encoded here: RE2 needs UTF-8, and its wrapper's own encoding refuses a lone surrogate)
        if self._loose_search is None or not self._loose_search(blob.encode("utf-8", "surrogatepass")):
            return False
        raw = blob.encode("ascii", "replace")
        # search() with pos/endpos sees the real context (\b, the Bearer lookbehind)
        for search in self._key_searches:
            if any(search(blob, start, end) for start, end in key_windows(raw)):
                return True
        if self._window_searches:
            for start, end, digits in digit_runs(blob, raw):
                chunk = blob[start:end]
                for search, min_digits in self._window_searches:
                    if digits >= min_digits and search(chunk):
                        return True
        return False

    def redact_text(self, text: str, counts: Counter) -> str:
        if len(text) < 5:
            return text
        windowed = [rule for rule in self.rules if rule.windowed]
        for rule in self.rules:
            if rule.windowed or (rule.hint is not None and not rule.hint(text)):
                continue
            text, n = rule.subn(text)
            if n:
                counts[rule.name] += n
        if windowed:
            text = self._redact_windows(text, windowed, counts)
        return text

    @staticmethod
    def _redact_windows(text: str, rules: list[_Rule], counts: Counter) -> str:
        windows = digit_runs(text)
        if not windows:
            return text
        pieces, last = [], 0
        for start, end, digits in windows:
            chunk = text[start:end]
            for rule in rules:
                if digits < rule.min_digits:
                    continue  # cannot match here, so it would leave the chunk as it is
                chunk, n = rule.subn(chunk)
                if n:
                    counts[rule.name] += n
            pieces += [text[last:start], chunk]
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    @staticmethod
    def strings_of(value, out: list) -> list:
        """Every string value inside a JSON-like value, appended to ``out``.

        Dict keys are left out: redaction keeps them, so a match in a key changes nothing.
        """
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, str):
                    out.append(item)
                elif isinstance(item, (dict, list)):
                    Redactor.strings_of(item, out)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    out.append(item)
                elif isinstance(item, (dict, list)):
                    Redactor.strings_of(item, out)
        return out

    def redact_value(self, value, counts: Counter):
        """Redact every string inside a JSON-like value (dict keys stay)."""
        if isinstance(value, str):
            return self.redact_text(value, counts)
        if isinstance(value, dict):
            return {k: self.redact_value(v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v, counts) for v in value]
        return value


_lock = threading.Lock()
_cached: tuple[float, Redactor] | None = None
_pending_hits: Counter = Counter()


def _load_rules() -> list[tuple[str, str, str]]:
    from traces.models import RedactionRule

    admin_rules = [(r.name, r.pattern, r.replacement)
                   for r in RedactionRule.objects.filter(builtin=False, enabled=True).order_by("name")]
    builtins = [(name, pattern, repl) for name, (pattern, repl) in BUILTIN_RULES.items()]
    # Admin rules first: a more specific admin pattern wins over a generic built-in.
    return admin_rules + builtins


def get_redactor() -> Redactor:
    """The current redactor, rebuilt from the rule table at most every few seconds."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    redactor = Redactor(_load_rules())
    _cached = (now, redactor)
    return redactor


def invalidate_cache() -> None:
    global _cached
    _cached = None


def record_hits(counts: Counter) -> None:
    if counts:
        with _lock:
            _pending_hits.update(counts)


def flush_hit_counts() -> int:
    """Add the counted redactions to the rules' ``hit_count``; returns how many were added."""
    from traces.models import RedactionRule

    with _lock:
        pending = dict(_pending_hits)
        _pending_hits.clear()
    added = 0
    try:
        with transaction.atomic():
            for name, count in sorted(pending.items()):
                added += count * RedactionRule.objects.filter(name=name).update(hit_count=F("hit_count") + count)
    except Exception:
        record_hits(Counter(pending))  # try again next time
        raise
    return added
