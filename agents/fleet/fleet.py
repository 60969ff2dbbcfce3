"""``Fleet``: run the demo agents in threads against a console, through its public interfaces only."""

import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from agents.client import Console, ConsoleError, setup_tracing
from agents.fleet.agents import ALL
from agents.fleet.sim import Mischief, SimAgent, Stopped

log = logging.getLogger("agents.fleet")

PAUSE_CHECK_S = 20.0
MAX_WAITING = 3  # runs per agent waiting for approval at once; the next ones take the path needing none


class Fleet:
    """The simulated agents, one scheduler thread each plus a small pool of run threads.

    ``keys`` maps agent names (support-bot, data-ops, deploy-bot, researcher)
    to their bearer keys. ``rate`` 1.0 is human-watchable (a run every few
    seconds per agent, spans lasting seconds); higher rates shorten every gap
    and pause proportionally and allow more runs at once, for load. Errors,
    including the console being down or restarting, are logged and the agents
    carry on. ``seed`` makes the sequence of choices repeatable. ``mischief``
    turns the deliberate misbehaviour off (False) or sets it (a ``Mischief``).
    """

    def __init__(self, base_url: str, keys: dict[str, str], rate: float = 1.0, seed: int | None = None, *,
                 mischief: bool | Mischief = True, export_delay_s: float = 0.5, export_timeout_s: float = 10.0):
        unknown = set(keys) - set(ALL)
        if unknown:
            raise ValueError(f"unknown demo agents {sorted(unknown)}; known: {', '.join(ALL)}")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.stop_event = threading.Event()
        rng = random.Random(seed)
        seed_for_mischief = rng.random()
        if isinstance(mischief, Mischief):
            self.mischief = mischief
        else:
            self.mischief = Mischief(random.Random(seed_for_mischief), rate, enabled=mischief)
        # Runs waiting for a human hold a slot each, so the slots exceed the waiting cap: the agent keeps working.
        self.max_runs = MAX_WAITING + max(2, min(32, math.ceil(3 * rate)))
        self.agents: list[SimAgent] = []
        self._providers = []
        self._consoles = []
        for name, key in keys.items():
            console = Console(self.base_url, key, max_retries=3, timeout=15)
            provider = setup_tracing(self.base_url, key, name, set_global=False, export_delay_s=export_delay_s,
                                     export_timeout_s=export_timeout_s)
            agent = ALL[name](console, provider.get_tracer("agents.fleet"), rng=random.Random(rng.random()),
                              rate=rate, stop=self.stop_event, mischief=self.mischief,
                              max_waiting=MAX_WAITING)
            agent.errors = 0
            self.agents.append(agent)
            self._providers.append(provider)
            self._consoles.append(console)
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> "Fleet":
        self._pool = ThreadPoolExecutor(max_workers=self.max_runs * max(1, len(self.agents)),
                                        thread_name_prefix="fleet-run")
        for agent in self.agents:
            thread = threading.Thread(target=self._drive, args=(agent,), name=f"fleet-{agent.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("fleet started: %s at rate %s", ", ".join(a.name for a in self.agents), self.rate)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop starting runs, interrupt the running ones, flush their spans."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        # In parallel: against a console that is down each flush waits out its exporter's retries.
        flushers = [threading.Thread(target=_shutdown, args=(p,), daemon=True) for p in self._providers]
        for thread in flushers:
            thread.start()
        for thread in flushers:
            thread.join(timeout=timeout)
        for console in self._consoles:
            console.close()

    def run_for(self, seconds: float) -> dict:
        self.start()
        try:
            self.stop_event.wait(seconds)
        finally:
            self.stop()
        return self.stats()

    def stats(self) -> dict:
        return {a.name: {"runs": a.runs, "approvals": a.approvals, "errors": a.errors} for a in self.agents}

    def _drive(self, agent: SimAgent) -> None:
        slots = threading.BoundedSemaphore(self.max_runs)
        next_pause_check = 0.0
        while not self.stop_event.is_set():
            try:
                if time.monotonic() >= next_pause_check:
                    next_pause_check = time.monotonic() + PAUSE_CHECK_S
                    if agent.console.whoami().get("paused"):
                        agent.back_off_paused(PAUSE_CHECK_S)
                if not agent.paused and slots.acquire(blocking=False):
                    self._pool.submit(self._one_run, agent, slots)
            except ConsoleError as exc:
                log.warning("%s: console unreachable (%s); retrying", agent.name, exc)
            except Exception:  # noqa: BLE001 - the fleet keeps going whatever happens
                log.exception("%s: scheduler error", agent.name)
            self.stop_event.wait(agent.next_gap())

    def _one_run(self, agent: SimAgent, slots: threading.BoundedSemaphore) -> None:
        try:
            agent.run()
        except Stopped:
            pass
        except ConsoleError as exc:
            agent.errors += 1
            log.warning("%s: run failed talking to the console: %s", agent.name, exc)
        except Exception:  # noqa: BLE001
            agent.errors += 1
            log.exception("%s: run failed", agent.name)
        finally:
            slots.release()


def _shutdown(provider) -> None:
    try:
        provider.shutdown()
    except Exception:  # noqa: BLE001 - flushing to a console that is gone must not raise
        log.warning("could not flush spans", exc_info=True)
