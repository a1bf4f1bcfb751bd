"""``make cluster-test``: the fan-out example DAG on a real CeleryExecutor deployment (see README.md).

``run.py`` wires the modules: ``config`` (sizes, limits, names), ``stack`` (processes),
``services`` (PostgreSQL, Redis, the sandbox, Airflow), ``dataset`` (the days of reversals),
``chaos`` (the worker kill, token expiry), ``facts`` (what a run left behind), ``checks`` (every
verdict, pure), ``overlap`` (run 3: two runs over the same items at once, its checks) and
``report`` (printing).
"""
