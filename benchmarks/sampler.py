"""A small statistical profiler: where the client's CPU goes, without cProfile's per-call distortion.

A daemon thread looks at every other thread's Python stack ``rate`` times a second. A sample whose
innermost frame is a known blocking call (socket read, lock or queue wait, sleep) counts as
*waiting*; every other sample counts as *CPU* for its innermost function (self) and for every
function on its stack (inclusive). Run the client with one worker thread for a clean picture:
then at any instant at most one thread wants the CPU.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from types import FrameType
from typing import Any

#: Innermost frames (file suffix, function) in which a thread sits blocked, off the CPU.
WAITING = {
    ("socket.py", "readinto"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("concurrent/futures/thread.py", "_worker"),
    ("concurrent/futures/_base.py", "wait"),
    ("selectors.py", "select"),
    ("hooks/_clock.py", "sleep"),
    ("ssl.py", "read"),
}


#: GIL switch interval while sampling (seconds): short, so that a sample lands where the CPU is.
SWITCH_INTERVAL = 5e-6


def _label(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "airflow_provider_loyalty/", "lib/python3"):
        index = path.rfind(marker)
        if index >= 0:
            path = path[index:].removeprefix("site-packages/")
            break
    return f"{path}:{code.co_name}"


def _waiting(frame: FrameType) -> bool:
    path = frame.f_code.co_filename
    name = frame.f_code.co_name
    return any(name == function and path.endswith(suffix) for suffix, function in WAITING)


class Sampler:
    """Sample the stacks of this process's other threads until :meth:`stop`.

    :param rate: samples per second.
    """

    def __init__(self, rate: float = 1000.0) -> None:
        self.interval = 1.0 / rate
        self.self_counts: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.cpu_samples = 0
        self.waiting_samples = 0
        self._switch_interval = 0.005
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        # The sampler needs the GIL to look: with the default 5 ms switch interval it would only get
        # it when the client blocks on I/O, and every sample would land on a send() or a write().
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch_interval)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                if _waiting(frame):
                    self.waiting_samples += 1
                    continue
                self.cpu_samples += 1
                self.self_counts[_label(frame)] += 1
                seen: set[str] = set()
                walk: FrameType | None = frame
                while walk is not None:
                    label = _label(walk)
                    if label not in seen:
                        seen.add(label)
                        self.inclusive[label] += 1
                    walk = walk.f_back

    def report(self, top: int = 25) -> dict[str, Any]:
        """Shares of CPU samples, inclusive and self, of the ``top`` functions."""
        total = max(1, self.cpu_samples)
        return {
            "cpu_samples": self.cpu_samples,
            "waiting_samples": self.waiting_samples,
            "inclusive": [(name, round(100 * n / total, 1)) for name, n in self.inclusive.most_common(top)],
            "self": [(name, round(100 * n / total, 1)) for name, n in self.self_counts.most_common(top)],
        }


def format_report(title: str, report: dict[str, Any]) -> str:
    """Render :meth:`Sampler.report` as text."""
    lines = [f"{title}: {report['cpu_samples']} CPU samples ({report['waiting_samples']} waiting samples left out)"]
    lines.append("  inclusive %  function (share of client CPU spent in it or below)")
    lines += [f"  {share:10.1f}  {name}" for name, share in report["inclusive"]]
    lines.append("  self %       function (share of client CPU spent in its own code)")
    lines += [f"  {share:10.1f}  {name}" for name, share in report["self"]]
    return "\n".join(lines)
