"""Per-key request rate limits, counted in this process (trace ingest and the approvals API)."""

import threading
import time


class TokenBucketLimiter:
    """Per-key token bucket (requests per second, burst of one second), per process; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}

    def allow(self, key_id: int, rate: int) -> bool:
        """Take one token from ``key_id``'s bucket; False (and nothing taken) when it has none."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(rate), now))
            tokens = min(float(rate), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                return False
            self._buckets[key_id] = (tokens - 1.0, now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
