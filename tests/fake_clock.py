class FakeClock:
    """A monotonic clock a test moves by hand (``clock.now += 5``); patch it over the code's clock."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
