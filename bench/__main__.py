"""``python -m bench all`` (or ``python -m bench ingest live ...``).

Runs each benchmark module, prints median/min/max, and updates bench/RESULTS.md:
each module has its own section (date, load average, command, peak RSS of the
console processes); sections of modules not run this time are kept as they
were. Prints the missed targets. Exits non-zero only when a benchmark could not
measure, saying why.
"""

import importlib
import math
import os
import pkgutil
import re
import sys
import time
import traceback
from datetime import UTC, datetime

from bench.common import ROOT, Server, machine

RESULTS = ROOT / "bench" / "RESULTS.md"
ONLY_WHEN_NAMED = {"soak"}  # long runs, not part of ``all``: python -m bench soak
SECTION = re.compile(r"<!-- section: (\w+) -->\n.*?<!-- end: \1 -->\n", re.S)


def available() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(ROOT / "bench")])
                  if m.name.startswith("bench_"))


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if not math.isnan(value) else "n/a"


def main(argv: list[str]) -> int:
    names = [n for n in available() if n not in ONLY_WHEN_NAMED] if not argv or argv == ["all"] else argv
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
        return 2
    settings = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_"))
    command = f"{settings + ' ' if settings else ''}.venv/bin/python -m bench {' '.join(argv) or 'all'}"
    sections, all_results, failures = {}, [], []
    for name in names:
        print(f"== {name}", flush=True)
        Server.peaks.clear()
        started, load_before = time.monotonic(), os.getloadavg()
        results, error = [], ""
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            results = list(module.run())
        except Exception as exc:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        unmeasured = [r.name for r in results if not r.samples or any(math.isnan(s) for s in r.samples)]
        if unmeasured and not error:
            error = "no figure for " + ", ".join(unmeasured)
        if not results and not error:
            error = "the module returned no results"
        peak = max(Server.peaks, default=0.0)
        for r in results:
            r.extra.setdefault("rss_mib", peak or None)
            if r.samples:
                print(f"   {r.name}: median {_fmt(r.median)} {r.unit} (min {_fmt(min(r.samples))}, "
                      f"max {_fmt(max(r.samples))}, n={len(r.samples)})"
                      f"{'  target ' + r.target if r.target else ''}"
                      f"{'  peak RSS %s MiB' % r.extra['rss_mib'] if r.extra.get('rss_mib') else ''}", flush=True)
        if error:
            failures.append(f"{name}: {error}")
            print(f"   could not measure: {error}", flush=True)
        all_results += results
        sections[name] = render_section(name, results, error, command, load_before, os.getloadavg(),
                                        time.monotonic() - started)
        write_results(sections)  # after each module, so a long run leaves what it has measured so far
    missed = [r for r in all_results if r.samples and r.met() is False]
    if missed:
        print("Missed targets: " + "; ".join(f"{r.name} ({_fmt(r.median)} {r.unit}, target {r.target})"
                                              for r in missed))
    else:
        print("Missed targets: none")
    if failures:
        print("Could not measure: " + "; ".join(failures))
        return 1
    return 0


def render_section(name, results, error, command, load_before, load_after, seconds) -> str:
    lines = [
        f"<!-- section: {name} -->",
        f"## {name}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} with `{command}` ({seconds / 60:.1f} min); machine load "
        f"average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores.",
        "",
    ]
    if results:
        lines += [
            "| benchmark | median | min | max | n | target | met | server peak RSS | load average | notes |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            if r.samples:
                met = {True: "yes", False: "**no**", None: ""}[r.met()]
                figures = f"{_fmt(r.median)} {r.unit} | {_fmt(min(r.samples))} | {_fmt(max(r.samples))}"
            else:
                met, figures = "", "n/a | | "
            rss = f"{r.extra['rss_mib']:,.0f} MiB" if r.extra.get("rss_mib") else ""
            load = str(r.extra.get("load") or f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
            load = load.removeprefix("load average ").split(" on ")[0]
            notes = str(r.notes).replace("|", "/").replace("\n", " ")
            lines.append(f"| {r.name} | {figures} | {len(r.samples)} | {r.target} | {met} | {rss} | {load} | {notes} |")
    if error:
        lines += ["", f"**Could not measure**: {error}"]
    lines += ["", f"<!-- end: {name} -->", ""]
    return "\n".join(lines)


def write_results(sections: dict[str, str]) -> None:
    """Replace the sections just run; keep the others from the previous RESULTS.md."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    kept = {m.group(1): m.group(0) for m in SECTION.finditer(old)}
    kept.update(sections)
    order = [n for n in available() if n in kept] + sorted(n for n in kept if n not in available())
    m = machine()
    head = [
        "# Benchmark results",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; {m['platform']}; Python {m['python']}; "
        f"{m['postgres']}. The machine is shared (other work runs at the same time): the load average beside "
        "each section tells how busy it was; figures on a quiet machine are better.",
        "",
        "Reproduce: `.venv/bin/python -m bench all` (or `python -m bench NAME` for one section), with PostgreSQL "
        "and Redis running; see bench/README.md. Each section below is from the run named in it.",
        "",
        "Summary (median of each figure; server peak RSS is the peak resident memory (VmHWM) of the console "
        "server processes, or of Phoenix for its own figure):",
        "",
        "| section | benchmark | median | target | met | server peak RSS | load average | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        block = kept[name]
        run_line = re.search(r"^Run (\S+ \S+ UTC)", block, re.M)
        when = run_line.group(1) if run_line else ""
        rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            if len(cells) >= 10:
                head.append(f"| {name} | {cells[0]} | {cells[1]} | {cells[5]} | {cells[6]} | {cells[7]} | {cells[8]} "
                            f"| {when} |")
        if "**Could not measure**" in block:
            head.append(f"| {name} | could not measure (see section) | | | | | | {when} |")
    head.append("")
    RESULTS.write_text("\n".join(head) + "\n" + "\n".join(kept[n] for n in order))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
