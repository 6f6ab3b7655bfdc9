"""Small array helpers the engine shares."""

from __future__ import annotations

import numpy as np


def sorted_unique(values) -> np.ndarray:
    """The distinct values of an integer array, sorted (`np.unique`'s result for integers). By a sort
    and one comparison: numpy 2.3+ `np.unique` hashes integer arrays, about 15 times slower on the
    half-million rows of a year of minutes (0.6 s instead of 0.04 s)."""
    array = np.sort(np.asarray(values).ravel())
    if array.size > 1:
        array = array[np.concatenate(([True], array[1:] != array[:-1]))]
    return array


def concatenated_ranges(starts, counts) -> np.ndarray:
    """`starts[k], starts[k] + 1, ..., starts[k] + counts[k] - 1` for every k, one after another
    (int64): the rows of slices of a flat array gathered in a new order, or repeated."""
    counts = np.asarray(counts, dtype=np.int64)
    first = np.cumsum(counts) - counts  # where each slice starts in the result
    return np.repeat(np.asarray(starts, dtype=np.int64), counts) + (np.arange(int(counts.sum()), dtype=np.int64)
                                                                    - np.repeat(first, counts))
