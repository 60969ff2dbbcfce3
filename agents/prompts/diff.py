"""Word-level diff of two texts, as (op, text) pieces for a template to render escaped."""

import difflib
import re

_TOKENS = re.compile(r"\s+|[^\s]+")
_SMALL_EQUAL_WORDS = 1  # a lone common word ("the") between two changes is folded into them


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """[(op, text)] with op "equal", "del" or "ins"; whitespace kept so the text reads naturally.

    Changed regions separated only by whitespace or one common word are merged, so a rewritten
    sentence reads as one deletion and one insertion rather than confetti.
    """
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    merged = []  # [changed?, i1, i2, j1, j2]
    for index, (tag, i1, i2, j1, j2) in enumerate(ops):
        changed = tag != "equal"
        if not changed and 0 < index < len(ops) - 1:
            words = sum(1 for t in a[i1:i2] if not t.isspace())
            changed = words <= _SMALL_EQUAL_WORDS
        if merged and merged[-1][0] and changed:
            merged[-1][2], merged[-1][4] = i2, j2
        else:
            merged.append([changed, i1, i2, j1, j2])
    pieces = []
    for changed, i1, i2, j1, j2 in merged:
        if not changed:
            pieces.append(("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(("ins", "".join(b[j1:j2])))
    return pieces


def diff_stats(pieces) -> dict:
    return {"added": sum(len(t.split()) for op, t in pieces if op == "ins"),
            "removed": sum(len(t.split()) for op, t in pieces if op == "del")}
