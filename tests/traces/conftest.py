import pytest

from traces import ingest, pricing, redaction


@pytest.fixture(autouse=True)
def _fresh_trace_caches():
    """Price and rule caches are per process; a test's rows must not leak into the next test."""
    pricing.invalidate_cache()
    redaction.invalidate_cache()
    ingest.rate_limiter.reset()
    yield
    pricing.invalidate_cache()
    redaction.invalidate_cache()
