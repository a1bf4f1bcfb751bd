"""A throwaway PostgreSQL server of a test's own (initdb in a temp dir, own loopback port), stoppable mid-test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def bindir() -> Path | None:
    """PostgreSQL's server binaries (``initdb``, ``postgres``), or ``None`` when not installed."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    which = shutil.which("initdb")
    for candidate in [*versions, *([Path(which).parent] if which else [])]:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    return None


class PostgresServer:
    """``initdb`` + ``postgres`` as the ``postgres`` OS user when run as root; trust auth on loopback only."""

    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        self.dir = Path(tempfile.mkdtemp(prefix="loyalty-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.dir / "data"),
                "-U",
                "loyalty",
                "--auth=trust",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.dir,
            timeout=120,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"postgresql://loyalty@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                *("-D", str(self.dir / "data"), "-p", str(self.port), "-k", str(self.dir)),
                *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("PostgreSQL did not start") from None
                time.sleep(0.1)
        time.sleep(0.5)  # accepting TCP a moment before it accepts logins

    def stop(self) -> None:
        """Immediate shutdown: every client connection dies at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(timeout=60)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
