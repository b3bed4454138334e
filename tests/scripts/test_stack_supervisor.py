"""The supervisor's own logic, on real processes (no Airflow, no MLflow): readiness gates, output
prefixing and log copies, one-off commands, watching, stopping the group and the descendants that
escaped it, and PDEATHSIG when the supervisor itself is killed. Seconds, not the 30-minute e2e run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from stack_supervisor import Console, StackError, Supervisor, descendants

from tests.scripts.conftest import SCRIPTS


class Lines(Console):
    """A Console that keeps what it prints."""

    def __init__(self) -> None:
        super().__init__(color=False)
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        with self._lock:
            self.lines.append(text)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def supervisor(tmp_path):
    console = Lines()
    sup = Supervisor(tmp_path / "logs", console)
    yield sup, console
    sup.stop_all(timeout=5)


def test_output_is_prefixed_and_copied_and_quiet_lines_stay_in_the_log(supervisor, tmp_path):
    sup, console = supervisor
    script = "echo hello; echo 'GET /health 200'; echo bye"
    service = sup.start("svc", ["bash", "-c", script], dict(os.environ), tmp_path, quiet=re.compile("/health"))
    assert service.wait(timeout=10) == 0
    assert "svc       | hello" in console.lines and "svc       | bye" in console.lines
    assert not any("/health" in line for line in console.lines)
    log = (tmp_path / "logs" / "svc.log").read_text()
    assert "hello\nGET /health 200\nbye\n" in log and log.startswith("---- ")
    assert any(line.startswith("stack     | started svc (pid ") for line in console.lines)


def test_run_returns_the_exit_code_and_forgets_the_command(supervisor, tmp_path):
    sup, _ = supervisor
    assert sup.run("once", ["bash", "-c", "echo working; exit 3"], dict(os.environ), tmp_path) == 3
    assert sup.services == []


def test_readiness_gate_returns_once_the_check_passes(supervisor, tmp_path):
    sup, _ = supervisor
    flag = tmp_path / "ready"
    service = sup.start("slow", ["bash", "-c", f"sleep 0.5; touch {flag}; sleep 60"], dict(os.environ))
    waited = sup.wait_until("the flag", flag.exists, [service], timeout=10, interval=0.05)
    assert flag.exists() and 0.3 < waited < 10


def test_readiness_gate_fails_early_with_the_log_tail_when_the_service_dies(supervisor):
    sup, _ = supervisor
    service = sup.start("crash", ["bash", "-c", "echo 'port taken'; exit 7"], dict(os.environ))
    started = time.monotonic()
    with pytest.raises(StackError, match=r"crash exited with code 7 while waiting for it(.|\n)*port taken"):
        sup.wait_until("it", lambda: False, [service], timeout=60, interval=0.05)
    assert time.monotonic() - started < 10  # not the 60 s timeout


def test_readiness_gate_times_out(supervisor):
    sup, _ = supervisor
    service = sup.start("idle", ["sleep", "60"], dict(os.environ))
    with pytest.raises(StackError, match="never not ready after 1 s"):
        sup.wait_until("never", lambda: False, [service], timeout=1, interval=0.05)


def test_watch_reports_a_service_that_exits_on_its_own(supervisor):
    sup, _ = supervisor
    sup.start("steady", ["sleep", "60"], dict(os.environ))
    quitter = sup.start("quitter", ["bash", "-c", "sleep 0.3; exit 4"], dict(os.environ))
    assert sup.watch() is quitter and quitter.returncode() == 4


def test_stop_all_stops_the_group_and_the_descendants_that_escaped_it(supervisor, tmp_path):
    """Like an Airflow task command: a grandchild in a session of its own, ignoring SIGTERM."""
    sup, _ = supervisor
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}.group; setsid bash -c 'trap \"\" TERM; sleep 301 & wait' & wait"
    service = sup.start("tree", ["bash", "-c", script], dict(os.environ))
    assert wait_for(lambda: len(descendants(service.pid)) >= 3 and Path(f"{pids}.group").exists())
    tree = descendants(service.pid)
    escaped = [pid for pid in tree if os.getsid(pid) != service.pid]
    assert escaped, "the setsid branch should run in its own session"
    started = time.monotonic()
    assert sup.stop_all(timeout=3) is True
    assert time.monotonic() - started < 20
    assert not service.alive()
    assert wait_for(lambda: not any(running(pid) for pid in tree)), [pid for pid in tree if running(pid)]
    assert sup.stop_all() is False  # nothing left to stop


def test_a_killed_supervisor_takes_its_services_with_it(tmp_path):
    """PR_SET_PDEATHSIG: SIGKILL the supervisor (no chance to clean up): its service still gets SIGTERM."""
    program = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {SCRIPTS!r})
        from stack_supervisor import Supervisor
        sup = Supervisor(Path({str(tmp_path / "logs")!r}))
        service = sup.start("orphan-to-be", ["sleep", "300"], dict(os.environ))
        print("pid", service.pid, flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        child = int(next(line for line in parent.stdout if line.startswith("pid ")).split()[1])
        assert running(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_for(lambda: not running(child)), f"service {child} outlived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
