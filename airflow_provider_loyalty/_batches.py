"""Batching, once: look-ups and inserts in chunks, requests of ``batch_size`` ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield consecutive lists of at most ``size`` values (an iterator is consumed once, lazily)."""
    iterator = iter(values)
    while batch := list(islice(iterator, size)):
        yield batch
