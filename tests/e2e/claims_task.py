"""One reversal task in a process of its own, for the claims tests: ``python -m tests.e2e.claims_task '<json>'``.

Runs ``CancelPointsOperator.execute`` with a stand-in task instance (connections come from the
environment, as in a worker), prints ``SUMMARY <json>`` or ``ERROR <text>`` as its last line.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace


class TaskInstance(SimpleNamespace):
    def xcom_push(self, key: str, value: object) -> None:
        self.pushed = value


def main(spec: dict) -> int:
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    ti = TaskInstance(
        dag_id="claims", run_id=spec["run_id"], task_id="cancel", map_index=spec.get("map_index", -1), try_number=1
    )
    operator = CancelPointsOperator(
        task_id="cancel",
        unique_ids=spec["ids"],
        ledger_conn_id="ledger",
        batch_size=spec.get("batch_size", 10),
        max_concurrency=spec.get("concurrency", 2),
        claim_lease_seconds=spec.get("lease", 60.0),
        max_failed_ratio=1.0,
    )
    try:
        summary = operator.execute({"ti": ti})
    except Exception as exc:  # noqa: BLE001 - the test reads the refusal
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
