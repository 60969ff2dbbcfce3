"""Span cost from tokens and the admin-editable :class:`~traces.models.ModelPrice` table."""

import time
from decimal import Decimal

CACHE_SECONDS = 10.0
MILLION = Decimal(1_000_000)
RESOLVED_MAX = 4096  # model names resolved per table load; agents choose them, so bounded
_cached: tuple[float, dict, dict] | None = None  # (loaded at, table, model name -> resolved price)


def _prices() -> tuple[dict[str, tuple[Decimal, Decimal]], dict]:
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1], cached[2]
    from traces.models import ModelPrice

    table = {row.model.lower(): (row.input_per_million, row.output_per_million) for row in ModelPrice.objects.all()}
    _cached = (now, table, {})
    return table, _cached[2]


def invalidate_cache() -> None:
    global _cached
    _cached = None


def price_for(model: str) -> tuple[Decimal, Decimal] | None:
    """Exact match, else the longest table entry that ``model`` starts with (resolved once per model
    and table load: the prefix search was a few per cent of ingest's CPU)."""
    if not model:
        return None
    table, resolved = _prices()
    name = model.lower()
    if name in resolved:
        return resolved[name]
    price = table.get(name)
    if price is None:
        best = None
        for candidate in table:
            if name.startswith(candidate) and (best is None or len(candidate) > len(best)):
                best = candidate
        price = table[best] if best else None
    if len(resolved) < RESOLVED_MAX:
        resolved[name] = price
    return price


def cost_of(*, model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price = price_for(model)
    if price is None or not (input_tokens or output_tokens):
        return Decimal(0)
    cost = (price[0] * input_tokens + price[1] * output_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))
