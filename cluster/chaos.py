"""The chaos of the cluster test: the worker kill of run 2 and the token expiries of run 1.

Both are called on every poll while a run is going (``tick``). :class:`Killer` chooses the moment
from the task states and the ledger, then freezes (SIGSTOP) and SIGKILLs the whole process tree of
one worker, as a lost machine would; it records a :class:`~cluster.facts.Kill`. :class:`TokenChurn`
expires Xoxoday's access tokens at the sandbox whenever a ``cancel_points`` try starts.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cluster.config import LEDGER_TABLE, VENDOR_TASKS, say
from cluster.facts import Kill, task_tries

if TYPE_CHECKING:
    from cluster.services import Cluster


class Killer:
    """Watches run 2 and SIGKILLs a worker while its mapped Capillary task is sending.

    The moment is chosen from the task states and the ledger: a ``revoke_earns`` task instance is
    running on the worker and has recorded a share of its shard's earns inside ``window`` (so it has
    sent requests and has many left), and no ``cancel_points`` task runs on that worker (a Xoxoday
    batch in flight would put up to 500 items in doubt at once; see the README's known limitation).
    """

    def __init__(
        self,
        cluster: Cluster,
        run_id: str,
        per_shard: Counter[int],
        window: tuple[float, float],
        *,
        freeze: bool = False,
    ) -> None:
        self.cluster = cluster
        self.run_id = run_id
        self.per_shard = per_shard
        self.window = window
        self.kill: Kill | None = None
        #: ``freeze``: the tree is only frozen (SIGSTOP), to be woken later (:attr:`frozen`) then killed
        self.freeze = freeze
        self.frozen: Any = None

    def progress(self) -> dict[tuple[str, int], int]:
        """Ledger rows per (task, map index) recorded so far in this run."""
        rows = self.cluster.query(
            "loyalty",
            f"SELECT task_id, map_index, COUNT(*) FROM {LEDGER_TABLE} WHERE run_id = %s GROUP BY 1, 2",
            [self.run_id],
        )
        return {(task, index): count for task, index, count in rows}

    def tick(self) -> None:
        """Kill a worker if now is the moment."""
        if self.kill is not None:
            return
        tries = [t for t in task_tries(self.cluster, self.run_id) if t.state == "running"]
        if not tries:
            return
        progress = self.progress()
        busy_with_points = {t.hostname for t in tries if t.task_id == VENDOR_TASKS["xoxoday"]}
        for t in tries:
            if t.task_id != VENDOR_TASKS["capillary"] or t.hostname not in self.cluster.workers:
                continue
            total = self.per_shard[t.map_index]
            done = progress.get((t.task_id, t.map_index), 0)
            if t.hostname in busy_with_points or not self.window[0] * total <= done <= self.window[1] * total:
                continue
            victim = t.hostname
            survivor = next(name for name in self.cluster.workers if name != victim)
            if self.freeze:
                self.frozen = self.cluster.stack.freeze_tree(self.cluster.workers[victim])
                pids = self.frozen.alive()
            else:
                pids = self.cluster.stack.kill_tree(self.cluster.workers[victim])
            at = datetime.now(timezone.utc)
            on_victim = [x for x in tries if x.hostname == victim]
            self.kill = Kill(victim, survivor, at, pids, on_victim, progress)
            names = ", ".join(f"{x.task_id}[{x.map_index}] try {x.try_number}" for x in on_victim)
            say(
                f"{'froze (SIGSTOP)' if self.freeze else 'SIGKILLed'} {victim} ({len(pids)} processes) while running {names}; "
                f"{done}/{total} earns of revoke_earns[{t.map_index}] recorded"
            )
            return


class TokenChurn:
    """During run 1, expires Xoxoday's access tokens at the sandbox once per ``cancel_points`` try.

    Each try is a new process, on either worker, that loads the stored pair: after an expiry it meets
    a 401, refreshes the pair and must store the rotated pair where the next try, maybe on the other
    worker, finds it: the refresh token rotates and the old one is refused at once. A pair kept per
    process or per machine would lock the next task out.
    """

    def __init__(self, cluster: Cluster, run_id: str) -> None:
        self.cluster = cluster
        self.run_id = run_id
        self.seen: set[tuple[int, int]] = set()
        self.expired = 0

    def tick(self) -> None:
        """Expire the tokens when a ``cancel_points`` try is seen running for the first time."""
        for t in task_tries(self.cluster, self.run_id):
            if (
                t.task_id == VENDOR_TASKS["xoxoday"]
                and t.state == "running"
                and (t.map_index, t.try_number) not in self.seen
            ):
                self.seen.add((t.map_index, t.try_number))
                self.cluster.sandbox("/_sandbox/tokens/expire?vendor=xoxoday", "POST", {})
                self.expired += 1
