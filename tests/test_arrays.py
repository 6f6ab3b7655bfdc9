"""`xmargin._arrays.sorted_unique` is `np.unique` for integer arrays (what the loop's schedules use)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin._arrays import sorted_unique


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
