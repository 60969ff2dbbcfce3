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
