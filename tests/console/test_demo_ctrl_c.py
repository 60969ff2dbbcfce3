"""Ctrl-C on ``manage.py demo`` (the README's first command) ends it cleanly.

The server used to stop first; the demo fleet, still running, then retried its approvals long-polls
and span exports against the closed port and its scheduler threads met a shut-down pool: a screen
of 'Connection refused' warnings and 'scheduler error' tracebacks before the prompt came back.
Now the fleet stops while the console still answers, then the server.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ctrl_c_stops_the_demo_fleet_then_the_server_without_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CONSOLE_BASE_URL")}
    env.update(CONSOLE_SQLITE_PATH=str(tmp_path / "demo.sqlite3"), PYTHONUNBUFFERED="1")
    demo = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(_free_port())], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    working, approvals_asked = threading.Event(), threading.Event()

    def read():
        for line in demo.stdout:
            lines.append(line)
            if "are working against" in line:
                working.set()
            if "Approval needed:" in line:  # a run is waiting on a long-poll: in flight at Ctrl-C
                approvals_asked.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert working.wait(180), "".join(lines[-40:])
        approvals_asked.wait(60)
        before_ctrl_c = len(lines)
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(timeout=10)
    after_ctrl_c = "".join(lines[before_ctrl_c:])
    for trouble in ("Traceback", "scheduler error", "Connection refused", "ERROR"):
        assert trouble not in after_ctrl_c, after_ctrl_c[:3000]
    assert demo.returncode == 0, after_ctrl_c[-3000:]
    assert "Stopping the demo fleet" in after_ctrl_c and "Finished server process" in after_ctrl_c
