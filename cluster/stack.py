"""Processes of the cluster test: started in their own session, logged to files, torn down by PID.

Every process the test starts is a child of the orchestrator (never a daemon), started with
``start_new_session=True`` so that a terminal's Ctrl-C reaches only the orchestrator, which then
tears everything down in order. Teardown signals a process's group, waits, and then SIGKILLs every
process of the tree it had before the signal. Process trees, states and signals go through
``psutil``, which checks a process's identity (its start time) before signalling it, so a recycled
PID is never hit. The orchestrator also makes itself a *child subreaper*: processes that leave their
group (Airflow puts each task in its own group) and are orphaned end up as its children, and a last
sweep kills whatever is left of its descendants.
"""

# Teardown reports what it had to force; processes are started from fixed command lines of the test.
# ruff: noqa: T201, S603

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); return whether it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ process tree
def descendants(pid: int) -> list[int]:
    """Return the PIDs of every live descendant of ``pid`` (children first)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(process: psutil.Process) -> bool:
    """Whether ``process`` is still running (a zombie is not) and its PID was not reused since."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class _Snapshot:
    """The processes of a tree at one moment (``psutil`` tells a PID's reuse from the process)."""

    processes: tuple[psutil.Process, ...]

    @classmethod
    def of(cls, pid: int) -> _Snapshot:
        try:
            root = psutil.Process(pid)
            return cls((root, *root.children(recursive=True)))
        except psutil.NoSuchProcess:
            return cls(())

    @classmethod
    def descendants_of_self(cls) -> _Snapshot:
        return cls(tuple(psutil.Process().children(recursive=True)))

    def alive(self) -> list[int]:
        """PIDs of the members still running (zombies excluded) and still the same process."""
        return [process.pid for process in self.processes if alive(process)]

    def kill(self, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every member still alive; return their PIDs."""
        hit = []
        for process in self.processes:
            if not alive(process):
                continue
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                process.send_signal(sig)  # refuses a reused PID
                hit.append(process.pid)
        return hit


# ---------------------------------------------------------------------------------------- processes
@dataclass
class Service:
    """One started process: its name, its ``Popen`` and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    #: teardown order: higher tiers stop first (Airflow 2, sandbox and broker 1, database 0).
    tier: int = 2

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the process has not exited."""
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """The started processes, in start order; :meth:`stop_all` stops them in reverse order.

    :param logs: folder of the per-process log files.
    """

    logs: Path
    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        tier: int = 2,
    ) -> Service:
        """Start ``argv`` in a new session with stdout and stderr in ``<logs>/<name>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        service = Service(name, popen, log, stop_signal, tier)
        self.services.append(service)
        return service

    def kill_tree(self, service: Service) -> list[int]:
        """SIGKILL a service and every process it started, as if its machine died; return the PIDs.

        The tree is frozen first (SIGSTOP to every member), so that no member notices the others
        dying and reacts (a supervisor reporting its task, a parent respawning a child).
        """
        snapshot = _Snapshot.of(service.pid)
        snapshot.kill(signal.SIGSTOP)
        hit = snapshot.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.popen.wait(timeout=10)
        return hit

    def freeze_tree(self, service: Service) -> _Snapshot:
        """SIGSTOP a service and every process it started (a machine paused); the snapshot later wakes or kills them."""
        snapshot = _Snapshot.of(service.pid)
        snapshot.kill(signal.SIGSTOP)
        return snapshot

    def stop(self, services: Sequence[Service], grace: float = 10.0) -> None:
        """Signal the services' groups at once, wait up to ``grace`` seconds, then SIGKILL what is left."""
        snapshots = [_Snapshot.of(service.pid) for service in services]
        for service in services:
            if service.running():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(service.pid, service.stop_signal)
        deadline = time.monotonic() + grace
        for service in services:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        settle = time.monotonic() + 2  # children exit a moment after their parent
        while any(s.alive() for s in snapshots) and time.monotonic() < settle:
            time.sleep(0.1)
        for service, snapshot in zip(services, snapshots, strict=True):
            forced = snapshot.kill(signal.SIGKILL)
            if forced:
                print(f"[cluster] {service.name}: SIGKILLed {len(forced)} process(es) still running", flush=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.popen.wait(timeout=5)

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop every service, by tier (Airflow, then sandbox and broker, then the database).

        Then kill any descendant of ours left behind (orphans re-parented to us, the subreaper).
        """
        for tier in sorted({service.tier for service in self.services}, reverse=True):
            group = [service for service in self.services if service.tier == tier]
            try:
                self.stop(group, grace=grace)
            except Exception as exc:  # keep tearing down the others
                print(f"[cluster] could not stop {[s.name for s in group]}: {exc}", flush=True)
        killed = _Snapshot.descendants_of_self().kill(signal.SIGKILL)
        if killed:
            print(f"[cluster] killed {len(killed)} leftover process(es): {killed}", flush=True)
        _reap_orphans()


def _reap_orphans() -> None:
    """Collect exit statuses of orphans re-parented to us (we are their subreaper)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def wait_until(
    what: str,
    check: Callable[[], object],
    *,
    timeout: float,
    services: Iterable[Service] = (),
    interval: float = 0.25,
) -> object:
    """Call ``check`` until it returns something truthy; fail early when a watched service exits.

    :raises RuntimeError: on timeout, or when one of ``services`` is no longer running.
    """
    deadline = time.monotonic() + timeout
    watched = list(services)
    last_error: BaseException | None = None
    while True:
        for service in watched:
            if not service.running():
                raise RuntimeError(f"{service.name} exited (code {service.popen.returncode}) while waiting for {what}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # not ready yet
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)
