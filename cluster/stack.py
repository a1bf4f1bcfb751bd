"""Processes of the cluster test: started in their own session, logged to files, torn down by PID.

Every process the test starts is a child of the orchestrator (never a daemon), started with
``start_new_session=True`` so that a terminal's Ctrl-C reaches only the orchestrator, which then
tears everything down in order. Teardown signals a process's group, waits, and then SIGKILLs every
process of the tree it had before the signal (checked by start time, so a recycled PID is never
hit). The orchestrator also makes itself a *child subreaper*: processes that leave their group
(Airflow puts each task in its own group) and are orphaned end up as its children, and a last sweep
kills whatever is left of its descendants.
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
def _stat(pid: int) -> tuple[int, str, int] | None:
    """Return ``(ppid, state, start_time)`` of a process from /proc, ``None`` if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid: int) -> list[int]:
    """Return the PIDs of every live descendant of ``pid`` (children first)."""
    children: dict[int, list[int]] = {}
    for other in _all_pids():
        info = _stat(other)
        if info is not None:
            children.setdefault(info[0], []).append(other)
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


@dataclass(frozen=True)
class _Snapshot:
    """PIDs of a process tree with their start times (to tell a PID's reuse from the process)."""

    pids: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, pid: int) -> _Snapshot:
        entries = []
        for member in [pid, *descendants(pid)]:
            info = _stat(member)
            if info is not None:
                entries.append((member, info[2]))
        return cls(tuple(entries))

    def alive(self) -> list[int]:
        """Members still running (zombies excluded) and still the same process."""
        out = []
        for pid, started in self.pids:
            info = _stat(pid)
            if info is not None and info[2] == started and info[1] != "Z":
                out.append(pid)
        return out

    def kill(self, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every member still alive; return their PIDs."""
        hit = self.alive()
        for pid in hit:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
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
        leftovers = _Snapshot(tuple((pid, info[2]) for pid in descendants(os.getpid()) if (info := _stat(pid))))
        killed = leftovers.kill(signal.SIGKILL)
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
