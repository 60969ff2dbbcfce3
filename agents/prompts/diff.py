"""Word-level diff of two texts, as (op, text) pieces for a template to render escaped."""

import difflib
import re

_TOKENS = re.compile(r"\s+|[^\s]+")


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """[(op, text)] with op "equal", "del" or "ins"; whitespace kept so the text reads naturally."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    pieces = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(("equal", "".join(a[i1:i2])))
            continue
        if tag in ("delete", "replace"):
            pieces.append(("del", "".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            pieces.append(("ins", "".join(b[j1:j2])))
    return pieces


def diff_stats(pieces) -> dict:
    return {"added": sum(len(t.split()) for op, t in pieces if op == "ins"),
            "removed": sum(len(t.split()) for op, t in pieces if op == "del")}
