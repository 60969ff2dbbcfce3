"""``python manage.py simulate --url URL --key AGENT=KEY [...] --rate R --duration S``.

Runs the demo fleet against any console, over HTTP only. Agents: support-bot,
data-ops, deploy-bot, researcher (each needs a key issued by that console).
"""

import logging

from django.core.management.base import BaseCommand, CommandError


def parse_key(value: str) -> tuple[str, str]:
    name, sep, key = value.partition("=")
    if not sep or not name or not key:
        raise CommandError(f"--key wants AGENT=KEY, got {value!r}")
    return name.strip(), key.strip()


class Command(BaseCommand):
    help = "Run the simulated agents against a console through its public API (OTLP, approvals, prompts)."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="the console's base URL, e.g. http://127.0.0.1:8000")
        parser.add_argument("--key", action="append", default=[], metavar="AGENT=KEY", required=True,
                            help="an agent and its key; repeat for more agents")
        parser.add_argument("--rate", type=float, default=1.0,
                            help="speed: 1 is human-watchable; higher shortens every pause, allows more runs at once")
        parser.add_argument("--duration", type=float, default=0,
                            help="seconds to run; 0 runs until Ctrl-C")
        parser.add_argument("--seed", type=int, default=None, help="repeatable choices")
        parser.add_argument("--no-mischief", action="store_true", help="no loops, cost spikes or conflicts")

    def handle(self, *args, url, key, rate, duration, seed, no_mischief, **options):
        from agents.fleet import Fleet

        if options["verbosity"] < 2:  # one line per request would drown the fleet's own warnings
            logging.getLogger("httpx").setLevel(logging.WARNING)
        keys = dict(parse_key(k) for k in key)
        try:
            fleet = Fleet(url, keys, rate=rate, seed=seed, mischief=not no_mischief)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Simulating {', '.join(keys)} against {url} at rate {rate}"
                          + (f" for {duration:g}s" if duration else " until Ctrl-C"))
        fleet.start()
        try:
            fleet.stop_event.wait(duration or None)
        except KeyboardInterrupt:
            self.stdout.write("Stopping...")
        finally:
            fleet.stop()
        for name, counts in fleet.stats().items():
            self.stdout.write(f"  {name:12} runs={counts['runs']} approvals={counts['approvals']} "
                              f"errors={counts['errors']}")
