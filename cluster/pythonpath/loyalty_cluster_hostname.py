"""``[core] hostname_callable`` of the cluster test: one machine, several "hosts".

Both Celery workers run on this machine, so Airflow's default (the FQDN) would record the same
``task_instance.hostname`` for both. Each process of the cluster test gets its own
``LOYALTY_CLUSTER_HOSTNAME`` (``worker-a``, ``worker-b``, ``scheduler``...), and Airflow calls this
function wherever it records a hostname. The module sits alone in ``cluster/pythonpath/``, which
the test puts on every Airflow process's ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """Return ``$LOYALTY_CLUSTER_HOSTNAME``, or the machine's FQDN when it is not set."""
    return os.environ.get("LOYALTY_CLUSTER_HOSTNAME") or socket.getfqdn()
