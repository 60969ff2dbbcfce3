"""Starting prices (USD per million tokens) for widely used models, so costs show from
the first span. Admins edit or add rows; an existing row is never overwritten."""

from decimal import Decimal

from django.db import migrations

# model prefix: (input, output), list prices as published by the providers in 2025
DEFAULT_PRICES = {
    "gpt-4o": ("2.50", "10.00"),
    "gpt-4o-mini": ("0.15", "0.60"),
    "gpt-4.1": ("2.00", "8.00"),
    "gpt-4.1-mini": ("0.40", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.40"),
    "o3": ("2.00", "8.00"),
    "o4-mini": ("1.10", "4.40"),
    "claude-opus-4": ("15.00", "75.00"),
    "claude-sonnet-4": ("3.00", "15.00"),
    "claude-3-7-sonnet": ("3.00", "15.00"),
    "claude-3-5-sonnet": ("3.00", "15.00"),
    "claude-3-5-haiku": ("0.80", "4.00"),
    "gemini-2.5-pro": ("1.25", "10.00"),
    "gemini-2.5-flash": ("0.30", "2.50"),
    "gemini-2.0-flash": ("0.10", "0.40"),
    "mistral-large": ("2.00", "6.00"),
}


def add_prices(apps, schema_editor):
    ModelPrice = apps.get_model("traces", "ModelPrice")
    for model, (input_price, output_price) in DEFAULT_PRICES.items():
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={"input_per_million": Decimal(input_price), "output_per_million": Decimal(output_price)},
        )


class Migration(migrations.Migration):
    dependencies = [("traces", "0003_partition_spans")]

    operations = [migrations.RunPython(add_prices, migrations.RunPython.noop)]
