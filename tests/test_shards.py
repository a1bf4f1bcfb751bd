"""The suite's shards: every test file runs in exactly one, and the work is spread evenly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import _shards

weights = st.dictionaries(st.text("abcdefgh/_.", min_size=1, max_size=12), st.floats(0.0, 500.0), max_size=60)


@given(weights, st.integers(1, 4))
def test_every_file_goes_to_exactly_one_shard_and_no_shard_is_loaded_past_its_share_plus_one_file(
    files: dict[str, float], shards: int
) -> None:
    placed = _shards.assign(files, shards)
    assert set(placed) == set(files)
    assert all(1 <= shard <= shards for shard in placed.values())
    load = [sum(w for f, w in files.items() if placed[f] == k) for k in range(1, shards + 1)]
    # longest-first greedy: a shard exceeds the mean only by the last file it took, at most the largest
    assert max(load) <= sum(files.values()) / shards + max(files.values(), default=0.0) + 1e-6


def test_the_assignment_depends_only_on_the_files_and_their_weights() -> None:
    files = {f"tests/t{i}.py": float(i % 7) for i in range(40)}
    assert _shards.assign(files, 2) == _shards.assign(dict(reversed(list(files.items()))), 2)


def test_the_two_longest_files_run_in_different_shards() -> None:
    items = [("tests/test_install.py", False)] * 3 + [("tests/benchmarks/test_bench_smoke.py", False)]
    items += [(f"tests/e2e/test_{i}.py", True) for i in range(30)]
    placed = _shards.assign(_shards.file_weights(items), 2)
    assert placed["tests/test_install.py"] != placed["tests/benchmarks/test_bench_smoke.py"]


@pytest.mark.parametrize("value", ["2", "0/2", "3/2", "a/b", "1/2/3"])
def test_a_malformed_shard_setting_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="LOYALTY_TEST_SHARD"):
        _shards.parse(value)


def test_unset_means_the_whole_suite() -> None:
    assert _shards.parse(None) is None and _shards.parse("") is None
    assert _shards.parse("2/2") == (2, 2)
