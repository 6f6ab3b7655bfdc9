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
