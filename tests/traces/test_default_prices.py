from decimal import Decimal

import pytest

from traces import pricing

pytestmark = pytest.mark.django_db


def test_common_models_have_a_price_from_the_start():
    pricing.invalidate_cache()
    # 1M input + 1M output tokens of gpt-4o-mini: 0.15 + 0.60 USD
    assert pricing.cost_of(model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=1_000_000) == Decimal("0.75")
    # a dated release matches its family by prefix
    assert pricing.cost_of(model="claude-sonnet-4-20250514", input_tokens=1000, output_tokens=0) == Decimal("0.003")
    assert pricing.cost_of(model="unknown-model", input_tokens=1000, output_tokens=1000) == Decimal(0)


def test_a_resolved_model_follows_a_price_change_and_agent_chosen_names_stay_bounded():
    """Prices are resolved once per model name and table load; an admin's change still applies to a
    name resolved before, and the names agents send (any string) cannot grow the memo without bound."""
    from traces.models import ModelPrice

    pricing.invalidate_cache()
    before = pricing.cost_of(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0)
    ModelPrice.objects.update_or_create(model="gpt-4o", defaults={"input_per_million": Decimal("7"),
                                                                  "output_per_million": Decimal("9")})
    pricing.invalidate_cache()  # what saving in the admin does
    after = pricing.cost_of(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0)
    assert before != after and after == Decimal("7")

    for i in range(pricing.RESOLVED_MAX + 500):
        pricing.price_for(f"made-up-model-{i}")
    assert len(pricing._prices()[1]) <= pricing.RESOLVED_MAX
    assert pricing.price_for("gpt-4o-mini") is not None  # still resolved past the bound
