"""Start, stop and crash `runnel serve` for the compatibility tests.

A `Runnel` owns one data directory and at most one running `runnel serve` process on it. It can be
stopped gracefully (SIGTERM, exit code 0 asserted), killed with SIGKILL, and started again on the
same data directory and, by default, on the same port, so that clients that are still running
reconnect to it.

Every process's stderr is appended to a log file under `<target>/compat/logs/`, which is kept after
the run (CI uploads or prints it on failure).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
READY_RE = re.compile(r"^runnel ready: kafka=(127\.0\.0\.1):(\d+) http=(127\.0\.0\.1):(\d+)\s*$")

REPO = Path(__file__).resolve().parents[3]


def target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    if t:
        p = Path(t)
        return p if p.is_absolute() else REPO / p
    return REPO / "target"


def runnel_bin() -> str:
    b = os.environ.get("RUNNEL_BIN")
    if b:
        return b
    return str(target_dir() / "debug" / "runnel")


def log_dir() -> Path:
    d = Path(os.environ.get("RUNNEL_COMPAT_LOG_DIR") or (target_dir() / "compat" / "logs"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if the test process dies (no orphaned brokers in CI)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class RunnelError(AssertionError):
    pass


class Runnel:
    def __init__(self, name: str, data_dir: Path, extra_args: list[str] | None = None):
        self.extra_args = list(extra_args or [])
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir() / f"{self.name}.log"
        self.log_path.write_text("")  # fresh log for this test (module)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.http_port: int | None = None
        self.starts = 0
        self._stdout_lines: list[str] = []

    # ------------------------------------------------------------------ properties
    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "runnel is not started"
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API (a free port chosen at each start)."""
        assert self.http_port is not None, "runnel is not started"
        return f"http://127.0.0.1:{self.http_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int | None = None) -> "Runnel":
        """Start `runnel serve` on the data dir; port None = the previous port if any, else 0."""
        assert not self.running(), "runnel already running"
        if port is None:
            port = self.port if self.port is not None else 0
        deadline = time.monotonic() + READY_TIMEOUT_S
        attempt = 0
        while True:
            attempt += 1
            ok, msg = self._start_once(port, deadline)
            if ok:
                return self
            # The previous process's port may still be held for a moment; retry a same-port
            # restart while time remains, but never a first start on port 0.
            if port != 0 and "in use" in msg.lower() and time.monotonic() < deadline - 1:
                time.sleep(0.2)
                continue
            raise RunnelError(msg)

    def _start_once(self, port: int, deadline: float) -> tuple[bool, str]:
        binary = runnel_bin()
        if not os.path.exists(binary):
            return False, f"runnel binary not found at {binary} (set RUNNEL_BIN or run tests/compat/run.sh)"
        cmd = [binary, "serve", "--data-dir", str(self.data_dir), "--kafka-listener", f"127.0.0.1:{port}",
               "--http-listener", "127.0.0.1:0", *self.extra_args]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            # runnel reads RUNNEL_* settings from the environment: keep the caller's out
            env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNEL_")}
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_die_with_parent,
                env=env,
            )
        proc = self.proc
        ready: dict = {}
        got = threading.Event()
        lines = self._stdout_lines

        def reader():
            # Keep draining stdout for the life of the process so runnel never blocks on a full pipe.
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                m = READY_RE.match(line)
                if m and not got.is_set():
                    ready["port"] = int(m.group(2))
                    ready["http_port"] = int(m.group(4))
                    got.set()
            got.set()

        threading.Thread(target=reader, name=f"runnel-stdout-{self.name}", daemon=True).start()
        while not got.wait(0.1):
            if time.monotonic() > deadline:
                break
        if "port" in ready:
            self.port = ready["port"]
            self.http_port = ready["http_port"]
            if port != 0 and self.port != port:
                self._kill()
                return False, f"runnel bound port {self.port}, expected {port}"
            return True, ""
        # not ready: exited early, or timed out
        if proc.poll() is None and time.monotonic() > deadline:
            self._kill()
            return False, (
                f"runnel did not print 'runnel ready: kafka=127.0.0.1:PORT' within {READY_TIMEOUT_S:.0f}s\n"
                f"stdout: {lines[-10:]}\n--- stderr ({self.log_path}) ---\n{self.stderr_tail()}"
            )
        rc = proc.wait(10)
        self.proc = None
        return False, (
            f"runnel exited with code {rc} before it was ready\nstdout: {lines[-10:]}\n"
            f"--- stderr ({self.log_path}) ---\n{self.stderr_tail()}"
        )

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> int:
        """Graceful stop: SIGTERM, wait, assert exit code 0."""
        assert self.proc is not None, "runnel is not running"
        proc = self.proc
        if proc.poll() is not None:
            self.proc = None
            raise RunnelError(
                f"runnel had already exited with code {proc.returncode} before SIGTERM\n"
                f"--- stderr ({self.log_path}) ---\n{self.stderr_tail()}"
            )
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            self.proc = None
            raise RunnelError(
                f"runnel did not exit within {STOP_TIMEOUT_S:.0f}s of SIGTERM\n"
                f"--- stderr ({self.log_path}) ---\n{self.stderr_tail()}"
            )
        self.proc = None
        self._append_log(f"===== stopped with SIGTERM: exit code {rc}\n")
        if rc != 0:
            raise RunnelError(
                f"runnel exited with code {rc} after SIGTERM (expected 0 = graceful shutdown)\n"
                f"--- stderr ({self.log_path}) ---\n{self.stderr_tail()}"
            )
        return rc

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "runnel is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._append_log("===== killed with SIGKILL\n")
        self.proc = None

    def restart(self) -> "Runnel":
        """Graceful stop, then start again on the same data dir and port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Teardown: graceful stop if running (asserting exit 0)."""
        if self.proc is not None:
            self.stop()

    def _append_log(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(text)


def wait_until(cond, timeout: float, what: str, interval: float = 0.1):
    """Poll `cond()` until it returns a truthy value or `timeout` seconds pass, then fail with `what`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # keep polling; report the last error on timeout
            last_exc = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for: {what() if callable(what) else what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise AssertionError(msg)
        time.sleep(interval)
