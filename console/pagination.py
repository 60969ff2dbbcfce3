"""Keyset ("after this id") pagination: stable under inserts, cheap on big tables."""

from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass
class KeysetPage:
    items: list
    next_cursor: str | None
    next_query: str | None


def keyset_page(queryset, request, *, key: str = "id", descending: bool = True, size: int = 50,
                drop: tuple[str, ...] = ()) -> KeysetPage:
    """One page of ``queryset`` after ``?cursor=``; the next page's query keeps the request's other
    parameters but those in ``drop`` (ones this page did not apply)."""
    cursor = request.GET.get("cursor", "")
    if cursor.isascii() and cursor.isdigit():
        op = "lt" if descending else "gt"
        queryset = queryset.filter(**{f"{key}__{op}": int(cursor)})
    items = list(queryset[: size + 1])
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        next_cursor = str(getattr(items[-1], key))
    next_query = None
    if next_cursor:
        params = request.GET.copy()
        params["cursor"] = next_cursor
        for name in drop:
            params.pop(name, None)
        next_query = "?" + urlencode(list(params.lists()), doseq=True)
    return KeysetPage(items=items, next_cursor=next_cursor, next_query=next_query)
