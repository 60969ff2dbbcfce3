"""``python -m bench all`` (or ``python -m bench ingest approvals ...``).

Runs each benchmark, prints median/min/max, rewrites bench/RESULTS.md with the
machine and date, and lists missed targets. Exits non-zero only when a
benchmark could not measure.
"""

import importlib
import pkgutil
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, machine


def available() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(ROOT / "bench")])
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = available() if not argv or argv == ["all"] else argv
    results, failures = [], []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            for result in module.run():
                results.append(result)
                print(f"   {result.name}: median {result.median:,.1f} {result.unit} "
                      f"(min {min(result.samples):,.1f}, max {max(result.samples):,.1f}, n={len(result.samples)})"
                      f"{'  target ' + result.target if result.target else ''}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            failures.append(f"{name}: {exc}")
    write_results(results, failures)
    missed = [r for r in results if r.met() is False]
    if missed:
        print("Missed targets: " + ", ".join(f"{r.name} ({r.median:,.1f} {r.unit}, target {r.target})"
                                              for r in missed))
    if failures:
        print("Could not measure: " + "; ".join(failures))
        return 1
    return 0


def write_results(results, failures) -> None:
    m = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} with `.venv/bin/python -m bench {' '.join(sys.argv[1:]) or 'all'}`.",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; Python {m['python']}; {m['postgres']}.",
        "",
        "| benchmark | median | min | max | n | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: ""}[r.met()]
        lines.append(f"| {r.name} | {r.median:,.1f} {r.unit} | {min(r.samples):,.1f} | {max(r.samples):,.1f} | "
                     f"{len(r.samples)} | {r.target} | {met} | {r.notes} |")
    if failures:
        lines += ["", "Could not measure:", *[f"- {f}" for f in failures]]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
