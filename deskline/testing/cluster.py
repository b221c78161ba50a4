"""Several real ``deskline serve`` processes on loopback ports, for scale-out tests and load runs.

    with ServeCluster(2, env={"DESKLINE_DATABASE_URL": url}, log_dir=tmp) as cluster:
        cluster.urls                  # ["http://127.0.0.1:41234", "http://127.0.0.1:41235"]
        cluster.kill(0)               # SIGKILL, as a crash would
        cluster.restart(0)            # the same port again; returns once /healthz answers

Each process is ``python -m deskline.cli serve --port P`` (one uvicorn process, the app's
lifespan and the event bus included) with its output in ``log_dir/serve-<i>.log``. Only
processes this object started are ever signalled, by their own pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["ServeCluster", "free_port", "wait_healthy"]


def free_port() -> int:
    """A port nobody listens on right now (the OS's choice for an ephemeral bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> float:
    """Seconds until ``url/healthz`` answered; raises if the process exits or time runs out."""
    started = time.monotonic()
    while not _healthy(url):  # a process that binds a port offers no event to wait on
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"deskline serve for {url} exited with {proc.returncode}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"deskline serve for {url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


class ServeCluster:
    """``n`` ``deskline serve`` processes sharing the environment ``env`` (the database URL)."""

    def __init__(self, n: int, *, env: Mapping[str, str], log_dir: Path | None = None,
                 workers: int = 1, startup_timeout: float = 60, grace: float = 10.0) -> None:
        self.n = n
        self.env = {**os.environ, **env}
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="deskline-cluster-"))
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.grace = grace  # how long ``stop`` lets open requests and streams finish
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.kills = 0

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "deskline.cli", "serve", "--port", str(self.ports[i]),
               "--workers", str(self.workers)]
        with (self.log_dir / f"serve-{i}.log").open("ab") as log:
            proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[i] = proc
        return proc

    def start(self) -> ServeCluster:
        """Start every process at once (they race to create the schema) and wait for all."""
        for i in range(self.n):
            self._spawn(i)
        for i, url in enumerate(self.urls):
            wait_healthy(url, self.procs[i], self.startup_timeout)
        return self

    def kill(self, i: int) -> None:
        """SIGKILL process ``i``: no shutdown, no flushing; in-flight requests die with it."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            self.kills += 1

    def restart(self, i: int) -> float:
        """Start process ``i`` again on its port; seconds until it answered."""
        self.kill(i)
        proc = self._spawn(i)
        return wait_healthy(self.urls[i], proc, self.startup_timeout)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM each process (uvicorn's graceful shutdown); after ``grace`` seconds a second
        signal (SIGINT) makes uvicorn stop waiting for open streams; SIGKILL what still lives."""
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        for proc in live:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("serve-*.log")))

    def __enter__(self) -> ServeCluster:
        try:
            return self.start()
        except BaseException:
            self.stop(0)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(self.grace)
