"""The rate and deferral scenarios (issue 25's proof on the cluster), each on a vendor sandbox of its own.

* **Rate**: ``loyalty_cluster_rate`` runs 16 mapped tasks over uneven shards on one vendor key that
  allows ``rate_rpm`` per ``rate_scenario_window`` s and answers a 60 s penalty once exceeded; first
  with the key's shared budget in Redis (each task set at ``rate_headroom`` x the limit), then with
  the static split (each task alone at that / pool slots) over other ids of the same key. The
  figures come from the sandbox's request log: the rate over the whole run, 429s per penalty
  announcement, requests inside a penalty.
* **Deferral**: ``loyalty_cluster_defer``'s task is set above its key's limit, meets a 60 s penalty
  and waits it out deferred; ``loyalty_cluster_other``'s task takes the one pool slot meanwhile; the
  triggerer is SIGKILLed and started again mid-deferral. Driven by :meth:`Deferral.tick` from any
  wait loop (it runs beside run 1).

The verdicts are pure functions in :mod:`cluster.scenario_checks`.
"""

# Subprocesses run our own CLI; URLs are the deployment's loopback ones.
# ruff: noqa: S310, S603

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cluster.checks import Check
from cluster.config import (
    DEFER_DAG_ID,
    LEDGER_TABLE,
    OTHER_DAG_ID,
    RATE_BUDGET_CONN_ID,
    RATE_DAG_ID,
    Failed,
    Settings,
    say,
)
from cluster.scenario_checks import (
    DeferFacts,
    RateFigures,
    defer_checks,
    rate_checks,
    rate_figures,
    sent_once_check,
)
from cluster.services import Cluster, start_triggerer
from cluster.stack import wait_until

API_PATH = "cancel_points"  # the Xoxoday endpoint the sandbox's limit applies to


def _call(url: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _ids(settings: Settings, count: int) -> list[int]:
    """The point transactions a scenario sandbox knows (the same generator, seed and size as it)."""
    from airflow_provider_loyalty.sandbox import generate_dataset

    data = generate_dataset(**_dataset_kwargs(settings, count))
    return [row[0] for row in data.point_reversals]


def _dataset_kwargs(settings: Settings, count: int) -> dict[str, Any]:
    return {
        "seed": settings.seed,
        "points": count,
        "earns": 2,
        "customers": 1,
        "big_customer_earns": 0,
        "redeemed_share": 0.0,
        "invalid_share": 0.0,
        "pos_share": 0.0,
    }


def _sizes(settings: Settings) -> dict[str, int]:
    return {"rate": 2 * sum(settings.rate_shards), "defer": settings.defer_items}


def start_sandboxes(cluster: Cluster, settings: Settings, scenarios: set[str]) -> dict[str, str]:
    """Start the scenarios' sandboxes; return their connections' ``AIRFLOW_CONN_*`` variables."""
    from airflow_provider_loyalty.sandbox import connection_env

    limits = {
        "rate": (settings.rate_rpm, settings.rate_scenario_window),
        "defer": (settings.defer_rpm, settings.defer_window),
    }
    env: dict[str, str] = {}
    for name in sorted(scenarios & set(limits)):
        rpm, window = limits[name]
        access, refresh = f"{name}-access-{secrets.token_hex(8)}", f"{name}-refresh-{secrets.token_hex(8)}"
        ready = cluster.work / f"sandbox-{name}.url"
        kwargs = _dataset_kwargs(settings, _sizes(settings)[name])
        data_args = [f"--{key.replace('_', '-')}={value}" for key, value in kwargs.items()]
        service = cluster.stack.start(
            f"sandbox-{name}",
            [
                sys.executable,
                "-m",
                "airflow_provider_loyalty.sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                *data_args,
                "--latency-ms",
                str(settings.latency_ms),
                "--xoxoday-rpm",
                str(rpm),
                "--rate-window-seconds",
                str(window),
                "--xoxoday-penalty-seconds",
                str(settings.scenario_penalty),
                "--xoxoday-access-token",
                access,
                "--xoxoday-refresh-token",
                refresh,
            ],  # fmt: skip
            env=dict(os.environ),
            tier=1,
        )
        wait_until(f"the {name} sandbox", ready.exists, timeout=60, services=[service])
        cluster.scenario_urls[name] = ready.read_text().strip()
        conns = connection_env(cluster.scenario_urls[name], access_token=access, refresh_token=refresh)
        env[f"AIRFLOW_CONN_LOYALTY_XOXODAY_{name.upper()}"] = conns["AIRFLOW_CONN_XOXODAY_DEFAULT"]
    return env


# ------------------------------------------------------------------------------------- DAG runs
def trigger(cluster: Cluster, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
    """Trigger a run of a scenario DAG (the CLI, as a user would)."""
    logical = datetime.now(timezone.utc).isoformat()
    cluster.airflow(
        "dags", "trigger", dag_id, "--run-id", run_id, "--logical-date", logical, "--conf", json.dumps(conf)
    )


def trigger_later(cluster: Cluster, dag_id: str, run_id: str) -> subprocess.Popen[bytes]:
    """:func:`trigger` without waiting for the CLI (it takes seconds), for use inside a wait loop."""
    logical = datetime.now(timezone.utc).isoformat()
    command = [str(Path(sys.executable).with_name("airflow")), "dags", "trigger", dag_id, "--run-id", run_id]
    with (cluster.stack.logs / "cli.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*command, "--logical-date", logical], env=cluster.env, stdout=log, stderr=subprocess.STDOUT
        )


def dag_run_state(cluster: Cluster, dag_id: str, run_id: str) -> str | None:
    """State of a DAG run (``None`` before it exists)."""
    rows = cluster.query("airflow", "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", [dag_id, run_id])
    return rows[0][0] if rows else None


def wait_run(cluster: Cluster, dag_id: str, run_id: str, timeout: float) -> str:
    """Wait until a run ends; return its state."""
    deadline = time.monotonic() + timeout
    while (state := dag_run_state(cluster, dag_id, run_id)) not in ("success", "failed"):
        for service in cluster.stack.services:
            if not service.running():
                raise Failed(f"{service.name} exited (code {service.popen.returncode}) during {run_id}")
        if time.monotonic() > deadline:
            raise Failed(f"{dag_id} {run_id} still {state} after {timeout:.0f} s")
        time.sleep(0.5)
    return str(state)


def _task_states(cluster: Cluster, dag_id: str, run_id: str, task_id: str) -> list[str]:
    rows = cluster.query(
        "airflow",
        "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s ORDER BY map_index",
        [dag_id, run_id, task_id],
    )
    return [str(r[0]) for r in rows]


def _attempts(url: str, ids: list[int]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        answer = _call(url, "/_sandbox/xoxoday/attempts?ids=" + ",".join(map(str, chunk)))
        out.update({int(uid): (int(a["attempts"]), int(a["cancelled"])) for uid, a in answer.items()})
    return out


def _requests(url: str, clock: str) -> list[tuple[float, bool]]:
    rows = _call(url, "/_sandbox/requests?vendor=xoxoday")["requests"]
    return [(float(r[clock]), bool(r["rate_limited"])) for r in rows if r["endpoint"] == API_PATH]


# ----------------------------------------------------------------------------------------- rate
def cut(ids: list[int], sizes: tuple[int, ...]) -> list[list[int]]:
    """Consecutive shards of ``ids`` of the given sizes."""
    shards, start = [], 0
    for size in sizes:
        shards.append(ids[start : start + size])
        start += size
    return shards


def run_rate(cluster: Cluster, settings: Settings, timings: dict[str, float]) -> tuple[list[Check], list[str]]:
    """The shared-budget run, then the static-split baseline on the same key; return checks and notes."""
    url = cluster.scenario_urls["rate"]
    per_run = sum(settings.rate_shards)
    ids = _ids(settings, 2 * per_run)
    rpm = settings.rate_rpm * settings.rate_headroom
    figures: dict[str, RateFigures] = {}
    checks: list[Check] = []
    for mode, chunk in (("shared", ids[:per_run]), ("static", ids[per_run:])):
        run_id = f"rate_{mode}"
        conf = {
            "shards": cut(chunk, settings.rate_shards),
            "requests_per_minute": rpm if mode == "shared" else rpm / settings.rate_slots,
            "rate_budget_conn_id": RATE_BUDGET_CONN_ID if mode == "shared" else "",
        }
        _call(url, "/_sandbox/reset-stats", "POST", {})
        started = time.monotonic()
        say(
            f"rate scenario: {run_id}, {len(chunk)} ids in {len(settings.rate_shards)} shards at {conf['requests_per_minute']:g}/min each"
        )
        trigger(cluster, RATE_DAG_ID, run_id, conf)
        state = wait_run(cluster, RATE_DAG_ID, run_id, settings.run_timeout)
        timings[f"rate scenario ({'shared budget' if mode == 'shared' else 'static split'})"] = (
            time.monotonic() - started
        )
        requests = _requests(url, "monotonic")
        (cluster.work / f"requests-{run_id}.json").write_text(json.dumps(requests))  # kept with --keep
        figures[mode] = rate_figures(requests, settings.rate_rpm, settings.scenario_penalty)
        say(f"rate scenario: {run_id} {state}: {figures[mode].text(settings.rate_rpm)}")
        tasks = _task_states(cluster, RATE_DAG_ID, run_id, "cancel_points")
        label = "shared budget" if mode == "shared" else "static split"
        checks.append(
            Check(
                f"rate ({label}): the run and its {len(settings.rate_shards)} mapped tasks succeeded",
                state == "success" and tasks == ["success"] * len(settings.rate_shards),
                f"run {state}; tasks {dict((s, tasks.count(s)) for s in set(tasks))}",
            )
        )
        checks.append(sent_once_check(f"rate ({label}): each id reached the vendor once", _attempts(url, chunk), chunk))
        if mode == "shared" and requests:  # the vendor's window must forget this run before the baseline's
            last = max(t for t, _ in _requests(url, "wall"))
            time.sleep(max(0.0, last + settings.rate_scenario_window - time.time()))
    checks[2:2] = rate_checks(figures["shared"], figures["static"], settings.rate_rpm)
    notes = [
        f"rate scenario, vendor limit {settings.rate_rpm}/min over {settings.rate_scenario_window:g} s windows, "
        f"{settings.scenario_penalty:g} s penalty, shards {list(settings.rate_shards)}, pool of {settings.rate_slots}: "
        f"shared budget at {rpm:g}/min together: {figures['shared'].text(settings.rate_rpm)}; static split at "
        f"{rpm / settings.rate_slots:g}/min per task: {figures['static'].text(settings.rate_rpm)}"
    ]
    return checks, notes


# ------------------------------------------------------------------------------------- deferral
class Deferral:
    """Drives the deferral scenario from a wait loop: trigger, watch, kill and restart the triggerer."""

    RUN_ID = "defer_a"
    OTHER_RUN_ID = "defer_other"

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.url = cluster.scenario_urls["defer"]
        self.ids = _ids(settings, settings.defer_items)
        self.other: subprocess.Popen[bytes] | None = None
        self.trigger_id: int | None = None
        self.triggerer_id: int | None = None
        self.deferred_at: float | None = None
        self.killed_at: float | None = None
        self.restarted_at: float | None = None
        self.taken_over = False
        self.started = 0.0

    def start(self) -> None:
        """Trigger the deferring DAG's run."""
        _call(self.url, "/_sandbox/reset-stats", "POST", {})
        self.started = time.monotonic()
        conf = {
            "shards": [self.ids],
            "requests_per_minute": self.settings.defer_task_rpm,
            "rate_budget_conn_id": RATE_BUDGET_CONN_ID,
        }
        trigger(self.cluster, DEFER_DAG_ID, self.RUN_ID, conf)
        say(
            f"deferral scenario: {len(self.ids)} ids at {self.settings.defer_task_rpm}/min against {self.settings.defer_rpm}/min"
        )

    def tick(self) -> None:
        """One look at the task; act when its moment comes."""
        rows = self.cluster.query(
            "airflow",
            "SELECT ti.state, ti.trigger_id, EXTRACT(EPOCH FROM t.created_date), t.triggerer_id "
            "FROM task_instance ti LEFT JOIN trigger t ON t.id = ti.trigger_id "
            "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = 'cancel_points'",
            [DEFER_DAG_ID, self.RUN_ID],
        )
        if not rows:
            return
        state, trigger_id, created, triggerer = rows[0]
        if state in ("running", "deferred") and self.other is None:
            self.other = trigger_later(self.cluster, OTHER_DAG_ID, self.OTHER_RUN_ID)
        if trigger_id is None or created is None:
            return
        self.trigger_id, self.deferred_at = trigger_id, float(created)
        if triggerer is None:
            return
        if self.killed_at is None and self.triggerer_id is None:
            self.triggerer_id = int(triggerer)
        if self.killed_at is None and time.time() - self.deferred_at >= 3:
            old = self.cluster.triggerer
            assert old is not None
            pids = self.cluster.stack.kill_tree(old)
            self.killed_at = time.time()
            self.cluster.stack.services.remove(old)  # gone on purpose: the wait loops watch the others
            start_triggerer(self.cluster)
            self.restarted_at = time.time()
            say(f"deferral scenario: SIGKILLed the triggerer ({len(pids)} processes) mid-deferral; started a new one")
        elif self.killed_at is not None and int(triggerer) != self.triggerer_id and not self.taken_over:
            self.taken_over = True
            say(f"deferral scenario: the trigger was taken over by triggerer job {triggerer}")

    def done(self) -> bool:
        """Both runs ended."""
        return all(
            dag_run_state(self.cluster, dag, run) in ("success", "failed")
            for dag, run in ((DEFER_DAG_ID, self.RUN_ID), (OTHER_DAG_ID, self.OTHER_RUN_ID))
        )

    def wait(self, timeout: float) -> None:
        """Tick until both runs ended."""
        deadline = time.monotonic() + timeout
        while not (self.other is not None and self.done()):
            if time.monotonic() > deadline:
                raise Failed(f"the deferral scenario did not end within {timeout:.0f} s")
            for service in self.cluster.stack.services:
                if not service.running():
                    raise Failed(f"{service.name} exited (code {service.popen.returncode}) during the deferral")
            self.tick()
            time.sleep(0.5)

    def finish(self, timings: dict[str, float]) -> tuple[list[Check], list[str]]:
        """Collect the facts; return the checks and a note with the figures."""
        timings["deferral scenario"] = time.monotonic() - self.started
        if self.other is not None and self.other.wait(timeout=60) != 0:
            raise Failed("`airflow dags trigger loyalty_cluster_other` failed (cli.log)")
        task = self.cluster.query(
            "airflow",
            "SELECT state, try_number, EXTRACT(EPOCH FROM queued_dttm) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = 'cancel_points'",
            [DEFER_DAG_ID, self.RUN_ID],
        )[0]
        other = self.cluster.query(
            "airflow",
            "SELECT state, EXTRACT(EPOCH FROM start_date), EXTRACT(EPOCH FROM end_date) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s",
            [OTHER_DAG_ID, self.OTHER_RUN_ID],
        )
        succeeded = self.cluster.query(
            "loyalty",
            f"SELECT DISTINCT item_key FROM {LEDGER_TABLE} WHERE run_id = %s AND status = 'succeeded'",
            [self.RUN_ID],
        )
        facts = DeferFacts(
            requests=tuple(_requests(self.url, "wall")),
            penalty=self.settings.scenario_penalty,
            ids=tuple(self.ids),
            deferred_at=self.deferred_at,
            resumed_at=float(task[2]) if task[2] is not None else None,
            other=(str(other[0][0]), float(other[0][1]), float(other[0][2])) if other and other[0][2] else None,
            triggerer_killed_at=self.killed_at,
            triggerer_restarted_at=self.restarted_at,
            taken_over=self.taken_over,
            attempts=_attempts(self.url, self.ids),
            ledger_succeeded=frozenset(int(r[0]) for r in succeeded if str(r[0]).isdigit()),
            task=(str(task[0]), int(task[1])),
        )
        checks = defer_checks(facts, self.settings.defer_rpm)
        note = "deferral scenario: " + "; ".join(c.detail for c in checks[:4])
        return checks, [note]


def wait_parsed(cluster: Cluster) -> None:
    """Wait until the dag-processor has parsed the scenarios' DAGs."""
    dag_ids = [RATE_DAG_ID, DEFER_DAG_ID, OTHER_DAG_ID]
    wait_until(
        "the scenarios' DAGs to be parsed",
        lambda: (
            cluster.query(
                "airflow",
                "SELECT COUNT(DISTINCT d.dag_id) FROM dag d JOIN serialized_dag s USING (dag_id) "
                "WHERE d.dag_id = ANY(%s) AND NOT d.is_paused",
                [dag_ids],
            )[0][0]
            == len(dag_ids)
        ),
        timeout=180,
        services=cluster.stack.services,
        interval=1,
    )
