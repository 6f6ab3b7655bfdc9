"""`xmargin._arrays.sorted_unique` is `np.unique` for integer arrays (what the loop's schedules use);
`concatenated_ranges` is the ranges of slices one after another."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin._arrays import concatenated_ranges, sorted_unique


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**62, 2**62), max_size=60) | st.lists(st.integers(0, 5), max_size=60))
def test_sorted_unique_is_np_unique_for_integers(values):
    array = np.array(values, dtype=np.int64)
    got = sorted_unique(array)
    assert got.dtype == np.int64 and got.tolist() == np.unique(array).tolist()


def test_sorted_unique_takes_any_shape_and_sequences():
    assert sorted_unique([[3, 1], [3, 2]]).tolist() == [1, 2, 3]
    assert sorted_unique(np.zeros(0, dtype=np.int64)).tolist() == []
    assert sorted_unique([7]).tolist() == [7]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 4)), max_size=20))
def test_concatenated_ranges_are_the_slices_one_after_another(slices):
    starts, counts = [s for s, _ in slices], [c for _, c in slices]
    got = concatenated_ranges(np.array(starts, dtype=np.int64), np.array(counts, dtype=np.int64))
    assert got.dtype == np.int64
    assert got.tolist() == [start + k for start, count in slices for k in range(count)]


def test_concatenated_ranges_by_hand():
    assert concatenated_ranges([5, 0, 5], [2, 0, 3]).tolist() == [5, 6, 5, 6, 7]
    assert concatenated_ranges([], []).tolist() == []
