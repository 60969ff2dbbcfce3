"""Soak: the demo fleet at a high rate for ten minutes against the production setup; memory and errors.

Starts, on a database of its own, ``manage.py serve --workers 2`` (PostgreSQL with the pool,
channels_redis) and ``celery -A console worker -B`` (every job of ``CONSOLE_JOBS`` on its beat),
seeds the demo (``manage.py demo --no-serve``), issues keys for the four demo agents and runs
``manage.py simulate --rate 20 --duration 600`` (mischief on: loops, cost spikes, conflicts). A
logged-in operator keeps live sockets open on the runs list and the dashboard, reconnecting on
close as the page would. Two logged-in reviewers (the demo's ``reviewer`` and ``reviewer2``) work
the approval queue over HTTP the whole time: they poll ``/approvals/``, open each pending request
and approve or reject it through the page's decision form (CSRF included), so the agents' guarded
actions go ahead and four-eyes requests get their second approval. Every 10 s it samples the resident memory (VmRSS) of every console
process (the serve process and its workers; the Celery worker, its pool and the embedded beat),
``/healthz`` and ``/metrics``.

Figures: the RSS curve (start, every minute, end, max) of all console processes together and per
kind, its growth from the first minute (after warm-up) to the end, error lines in the console's
logs (server at WARNING, Celery at INFO), ``/healthz`` answers other than 200, non-200 ingest
requests and rejected spans (from ``/metrics``), errors the fleet counted; the reviewers' decisions
made and failed (any answer but 2xx/3xx or the expected 409 of a request decided meanwhile), and
the guarded actions the agents ran (executions reported, read from the database).

Not part of ``python -m bench all`` (it takes ten minutes): ``python -m bench soak``.
"""

import html as html_module
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.common import (ROOT, WORK, CeleryWorker, Result, Server, bench_env, collect_static, create_staff,
                          database_url, load_average, login, manage, port_is_free, reset_named_database)

DB_URL = os.environ.get("BENCH_SOAK_DATABASE_URL", database_url("soak"))
PORT = int(os.environ.get("BENCH_SOAK_PORT", "18490"))
DURATION_S = float(os.environ.get("BENCH_SOAK_DURATION", "600"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "20"))
SAMPLE_S = 10.0
AGENTS = ("support-bot", "data-ops", "deploy-bot", "researcher")
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)")
WARNING_LINE = re.compile(r"\bWARNING\b")


# --- processes and memory ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def rss_mib(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass  # exited meanwhile (a recycled pool child)
    return round(total_kb / 1024, 1)


# --- live sockets ------------------------------------------------------------------------------


class LiveWatcher(threading.Thread):
    """A logged-in operator's open pages: one socket per topic, reconnecting whenever it closes."""

    def __init__(self, url: str, cookies: dict, topics=("runs", "dashboard")):
        super().__init__(daemon=True)
        self.base = url.replace("http://", "ws://")
        self.headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Origin": url}
        self.topics = topics
        self.stop = threading.Event()
        self.frames = {topic: 0 for topic in topics}
        self.reconnects = 0
        self.threads = []

    def run(self):
        self.threads = [threading.Thread(target=self._watch, args=(topic,), daemon=True) for topic in self.topics]
        for thread in self.threads:
            thread.start()
        for thread in self.threads:
            thread.join()

    def _watch(self, topic: str):
        from websockets.sync.client import connect

        first = True
        while not self.stop.is_set():
            try:
                with connect(f"{self.base}/ws/live/{topic}/", additional_headers=self.headers,
                             open_timeout=15) as socket:
                    if not first:
                        self.reconnects += 1
                    first = False
                    while not self.stop.is_set():
                        try:
                            socket.recv(timeout=1)
                            self.frames[topic] += 1
                        except TimeoutError:
                            continue
            except Exception:  # noqa: BLE001 - closed or refused: reconnect as the htmx extension does
                self.stop.wait(1)


# --- reviewers -------------------------------------------------------------------------------

REVIEWERS = (("reviewer", "reviewer-demo-pass"), ("reviewer2", "reviewer2-demo-pass"))  # seeded by manage.py demo
REJECT_SHARE = 0.2
CARD_ID = re.compile(r'<article id="request-(\d+)"')
FORM_FIELD = re.compile(r'name="(csrfmiddlewaretoken|digest)" value="([^"]*)"')
ARGUMENTS = re.compile(r'<textarea name="arguments"[^>]*>(.*?)</textarea>', re.S)


class Reviewer(threading.Thread):
    """A logged-in reviewer at the queue page for the whole soak, deciding as the browser does.

    Polls ``/approvals/`` (the queue, soonest due first), opens each pending request's page and
    posts its decision form with htmx's headers (the form's CSRF token and the page's
    ``X-CSRFToken``): mostly approve, sometimes reject with a reason category. Two reviewers
    working the same queue also give four-eyes requests their second approval, and race each other
    for the rest: a 409 (decided meanwhile, or the same reviewer twice) is expected, anything else
    but 2xx/3xx is a failed decision.
    """

    def __init__(self, url: str, username: str, password: str, seed: int):
        super().__init__(daemon=True)
        self.url, self.username, self.password = url, username, password
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.decided = {"approve": 0, "reject": 0}
        self.conflicts = 0
        self.failures: list[str] = []
        self.polls = 0

    def run(self):
        try:
            client = login(self.url, self.username, self.password)
        except Exception as exc:  # noqa: BLE001 - counted: no decision would come from this reviewer
            self.failures.append(f"login: {exc!r}")
            return
        try:
            while not self.stop.is_set():
                try:
                    self._poll(client)
                except Exception as exc:  # noqa: BLE001 - counted and shown in the results, the desk goes on
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.stop.wait(self.rng.uniform(1.0, 3.0))
        finally:
            client.close()

    def _poll(self, client: httpx.Client):
        queue = client.get("/approvals/")
        self.polls += 1
        if queue.status_code != 200:
            self.failures.append(f"GET /approvals/ {queue.status_code}")
            return
        ids = list(dict.fromkeys(CARD_ID.findall(queue.text)))
        if self.username != REVIEWERS[0][0]:
            ids.reverse()  # the second reviewer starts from the other end: fewer collisions
        for pk in ids[:5]:
            if self.stop.is_set():
                return
            self._decide(client, pk)

    def _decide(self, client: httpx.Client, pk: str):
        page = client.get(f"/approvals/{pk}/")
        if page.status_code != 200:
            self.failures.append(f"GET /approvals/{pk}/ {page.status_code}")
            return
        html = page.text
        start = html.find(f'action="/approvals/{pk}/decide/"')
        if start < 0:
            return  # decided meanwhile, or this reviewer gave the first of two approvals
        form = html[start:html.find("</form>", start)]
        fields = dict(FORM_FIELD.findall(form))
        arguments = ARGUMENTS.search(form)
        held = 'data-testid="held-no-approve"' in form
        reject = self.rng.random() < REJECT_SHARE
        if held and not reject:
            return  # waits for the conflict's arbitration, as a reviewer would
        data = {**fields, "reason_category": "", "reason": "",
                "arguments": html_module.unescape(arguments.group(1)) if arguments else ""}
        if reject:
            data.update(verdict="reject", reason_category=self.rng.choice(["policy", "risk", "needs_info"]),
                        reason="Not like this (soak reviewer).")
        else:
            data["verdict"] = "approve"
        answer = client.post(f"/approvals/{pk}/decide/", data=data, headers={
            "HX-Request": "true", "HX-Target": f"decide-{pk}", "HX-Current-URL": f"{self.url}/approvals/{pk}/",
            "X-CSRFToken": fields.get("csrfmiddlewaretoken", ""), "Referer": f"{self.url}/approvals/{pk}/"})
        if answer.status_code < 400:
            self.decided[data["verdict"]] += 1
        elif answer.status_code == 409:
            self.conflicts += 1
        else:
            self.failures.append(f"POST /approvals/{pk}/decide/ {answer.status_code}: {answer.text[:120]!r}")


EXECUTED = """
from approvals.models import ApprovalRequest
done = ApprovalRequest.objects.filter(executed_at__isnull=False)
print("EXECUTED=%d FAILED=%d" % (done.filter(execution_error="").count(), done.exclude(execution_error="").count()))
"""


def guarded_actions_run(env: dict) -> tuple[int, int]:
    """(executions reported with a result, with an error) by the agents: the fleet does not count them."""
    out = manage("shell", "-c", EXECUTED, env=env).stdout
    match = re.search(r"EXECUTED=(\d+) FAILED=(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


# --- metrics ---------------------------------------------------------------------------------


def metric_sums(text: str) -> dict[str, float]:
    """Sum of each sample name (labels folded), plus ``name{label}`` for the ingest status counter."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        try:
            number = float(value)
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + number
        if name == "console_ingest_requests_total":
            status = re.search(r'status="(\d+)"', head)
            key = f"{name}{{{status.group(1) if status else '?'}}}"
            sums[key] = sums.get(key, 0.0) + number
    return sums


def count_lines(path: Path, pattern: re.Pattern) -> tuple[int, list[str]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if pattern.search(line)]
    return len(lines), lines[:3]


# --- the run ---------------------------------------------------------------------------------


def curve(samples: list[tuple[float, float]], duration: float) -> str:
    """'start 412, 1 min 430, ..., 10 min 445, end 446, max 450' from (seconds, MiB) samples."""
    points = [f"start {samples[0][1]:,.0f}"]
    for minute in range(1, int(duration // 60) + 1):
        at = min(samples, key=lambda s: abs(s[0] - minute * 60))
        points.append(f"{minute} min {at[1]:,.0f}")
    points += [f"end {samples[-1][1]:,.0f}", f"max {max(v for _t, v in samples):,.0f}"]
    return ", ".join(points)


def growth(samples: list[tuple[float, float]]) -> float:
    """MiB from the first minute's sample (after warm-up) to the end."""
    after_warmup = min(samples, key=lambda s: abs(s[0] - 60)) if samples[-1][0] >= 60 else samples[0]
    return round(samples[-1][1] - after_warmup[1], 1)


def _parse_fleet(out: str) -> dict:
    stats = {"runs": 0, "approvals": 0, "errors": 0}
    for match in re.finditer(r"runs=(\d+) approvals=(\d+) errors=(\d+)", out):
        for key, value in zip(stats, match.groups()):
            stats[key] += int(value)
    return stats


def run() -> list[Result]:
    port_is_free(PORT, "BENCH_SOAK_PORT")
    env = bench_env(DATABASE_URL=DB_URL, WATCHERS_MODE="background")
    reset_named_database(DB_URL, env)
    manage("demo", "--no-serve", env=env)
    keys = [f"{agent}=" + manage("create_agent_key", agent, "--name", "soak", env=env).stdout.strip()
            for agent in AGENTS]
    create_staff(env, "soak-operator", ("Operator",))
    collect_static(env)  # before the first page: a static file missing from the manifest is a 500
    samples = {"total": [], "serve": [], "celery": []}
    health_failures, health_checks, loads = 0, 0, []
    metrics_first = metrics_last = {}
    fleet_log = WORK / "soak-simulate.log"
    with Server(port=PORT, workers=2, env=env) as server, CeleryWorker(env, "soak", wait_ready=True) as celery:
        client = login(server.url, "soak-operator")
        watcher = LiveWatcher(server.url, dict(client.cookies))
        client.close()
        watcher.start()
        reviewers = [Reviewer(server.url, name, password, seed) for seed, (name, password) in enumerate(REVIEWERS)]
        for reviewer in reviewers:
            reviewer.start()
        http = httpx.Client(base_url=server.url, timeout=30)

        def sample(at: float):
            nonlocal health_failures, health_checks, metrics_last
            serve, cel = rss_mib(process_tree(server.proc.pid)), rss_mib(process_tree(celery.proc.pid))
            samples["serve"].append((at, serve))
            samples["celery"].append((at, cel))
            samples["total"].append((at, round(serve + cel, 1)))
            health_checks += 1
            try:
                if http.get("/healthz").status_code != 200:
                    health_failures += 1
            except httpx.HTTPError:
                health_failures += 1
            try:
                metrics_last = metric_sums(http.get("/metrics").text)
            except httpx.HTTPError:
                pass

        sample(0.0)
        metrics_first = dict(metrics_last)
        started = time.monotonic()
        with open(fleet_log, "wb") as log:
            fleet = subprocess.Popen(
                [sys.executable, "manage.py", "simulate", "--url", server.url, "--rate", f"{RATE:g}", "--duration",
                 f"{DURATION_S:g}", "--seed", "7", *[arg for key in keys for arg in ("--key", key)]],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            next_at = SAMPLE_S
            while fleet.poll() is None and time.monotonic() - started < DURATION_S + 120:
                delay = started + next_at - time.monotonic()
                if delay > 0:
                    time.sleep(min(delay, 1.0))
                    continue
                sample(round(time.monotonic() - started, 1))
                if int(next_at) % 60 == 0:
                    loads.append(os.getloadavg()[0])
                next_at += SAMPLE_S
        finally:
            if fleet.poll() is None:
                fleet.terminate()
                fleet.wait(timeout=60)
        sample(round(time.monotonic() - started, 1))
        watcher.stop.set()
        for reviewer in reviewers:
            reviewer.stop.set()
        for reviewer in reviewers:
            reviewer.join(timeout=60)
        watcher.join(timeout=10)
        http.close()
        peak = server.peak_rss_mib()
        load = load_average()
    executed, execution_errors = guarded_actions_run(env)
    fleet_out = fleet_log.read_text(errors="replace")
    fleet = _parse_fleet(fleet_out)
    server_errors, server_examples = count_lines(server.log_path, ERROR_LINE)
    celery_errors, celery_examples = count_lines(celery.log_path, ERROR_LINE)
    warnings = count_lines(server.log_path, WARNING_LINE)[0] + count_lines(celery.log_path, WARNING_LINE)[0]

    def delta(name):
        return int(metrics_last.get(name, 0) - metrics_first.get(name, 0))

    ingest_total = delta("console_ingest_requests_total")
    ingest_ok = delta("console_ingest_requests_total{200}")
    minutes = samples["total"][-1][0] / 60
    loads_text = ", ".join(f"{v:.1f}" for v in loads)
    context = (f"{minutes:.1f} min at simulate --rate {RATE:g}; fleet: {fleet['runs']} runs, {fleet['approvals']} "
               f"approval requests; {delta('console_ingest_spans_total'):,} spans stored in "
               f"{ingest_total:,} OTLP requests; live frames received {sum(watcher.frames.values()):,} "
               f"({', '.join(f'{t} {n:,}' for t, n in watcher.frames.items())}), socket reconnects "
               f"{watcher.reconnects}; load average each minute {loads_text}")
    extra = {"rss_mib": peak, "load": load}
    made = sum(sum(r.decided.values()) for r in reviewers)
    failures = [f for r in reviewers for f in r.failures]
    desks = "; ".join(f"{r.username}: {r.decided['approve']} approved, {r.decided['reject']} rejected, "
                      f"{r.conflicts} answered 409 (decided meanwhile), {r.polls} queue polls" for r in reviewers)
    results = [
        Result("RSS of all console processes", "MiB", [v for _t, v in samples["total"]], "",
               f"{curve(samples['total'], minutes * 60)}; growth from minute 1 to the end "
               f"{growth(samples['total']):+.1f} MiB; {context}", extra),
        Result("RSS of serve (2 workers)", "MiB", [v for _t, v in samples["serve"]], "",
               f"{curve(samples['serve'], minutes * 60)}; growth {growth(samples['serve']):+.1f} MiB", extra),
        Result("RSS of celery worker -B", "MiB", [v for _t, v in samples["celery"]], "",
               f"{curve(samples['celery'], minutes * 60)}; growth {growth(samples['celery']):+.1f} MiB", extra),
        Result("RSS growth, minute 1 to end (all)", "MiB", [growth(samples["total"])], "", "", extra),
        Result("error lines in console logs", "lines", [server_errors + celery_errors], "< 1",
               f"server {server_errors}, celery {celery_errors}; {warnings} warning lines; first: "
               + " / ".join(line[:160] for line in server_examples + celery_examples), extra),
        Result("/healthz not 200", "answers", [health_failures], "< 1", f"of {health_checks} checks", extra),
        Result("ingest requests not 200", "requests", [ingest_total - ingest_ok], "< 1",
               f"of {ingest_total:,}; rejected spans {delta('console_ingest_rejected_spans_total')}", extra),
        Result("errors counted by the fleet", "errors", [fleet["errors"]], "< 1",
               f"see {fleet_log.relative_to(ROOT)}", extra),
        Result("reviewer decisions made (HTTP form posts)", "decisions", [made], "", desks, extra),
        Result("reviewer decisions failed", "decisions", [len(failures)], "< 1",
               "non-2xx/3xx answers other than 409, and transport errors; first: "
               + " / ".join(f[:160] for f in failures[:3]), extra),
        Result("guarded actions run by the agents", "actions", [executed], "",
               f"approved requests whose execution the agents reported: {executed} with a result, "
               f"{execution_errors} with an error (read from the database: the fleet does not count them), of "
               f"{fleet['approvals']} approval requests", extra),
    ]
    return results
