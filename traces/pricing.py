"""Span cost from tokens and the admin-editable :class:`~traces.models.ModelPrice` table."""

import time
from decimal import Decimal

CACHE_SECONDS = 10.0
MILLION = Decimal(1_000_000)
_cached: tuple[float, dict] | None = None


def _prices() -> dict[str, tuple[Decimal, Decimal]]:
    global _cached
    now = time.monotonic()
    if _cached is not None and now - _cached[0] < CACHE_SECONDS:
        return _cached[1]
    from traces.models import ModelPrice

    table = {row.model.lower(): (row.input_per_million, row.output_per_million) for row in ModelPrice.objects.all()}
    _cached = (now, table)
    return table


def invalidate_cache() -> None:
    global _cached
    _cached = None


def price_for(model: str) -> tuple[Decimal, Decimal] | None:
    """Exact match, else the longest table entry that ``model`` starts with."""
    if not model:
        return None
    table = _prices()
    name = model.lower()
    if name in table:
        return table[name]
    best = None
    for candidate in table:
        if name.startswith(candidate) and (best is None or len(candidate) > len(best)):
            best = candidate
    return table[best] if best else None


def cost_of(*, model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price = price_for(model)
    if price is None or not (input_tokens or output_tokens):
        return Decimal(0)
    cost = (price[0] * input_tokens + price[1] * output_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))
