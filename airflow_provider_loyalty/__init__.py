"""Apache Airflow provider that reverses loyalty transactions at Xoxoday Plum and Capillary."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
