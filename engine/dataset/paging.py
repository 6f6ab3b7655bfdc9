"""A feed's price arrays in a file-backed mapping, so that memory does not grow with the run's length.

A long book's price arrays are most of what a run holds: four 1-minute series cost 67 MB a year
for open, high, low and close together, and as much again for marks. `PagedArrays` keeps them in an
unnamed file (it never shows in a folder and goes when the process does) mapped shared into the
process. `release(before_row)` tells the kernel that the process no longer needs the pages of the
rows it has passed (madvise MADV_DONTNEED): they leave its resident memory, stay in the page cache
(written to the file when the kernel decides) and come back, byte for byte, if anything reads them
again (a strategy's long look back, the valuation of a snapshot). Correctness never depends on a
release: the arrays are ordinary numpy arrays of the same numbers.

Arrays are column-major (`order="F"`): one instrument's history is contiguous, so loading an
instrument writes, and releasing rows drops, whole pages of that instrument only.

Only on Linux, where MADV_DONTNEED has these semantics for shared file mappings, and only in a
folder on disk: elsewhere (`available()` False, a tmpfs folder) the feed stays in ordinary memory,
where what it costs is seen.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from xmargin.errors import RunError

# a feed whose arrays take more is paged (a year of four 1-minute series: 74 MB, 140 with marks): the
# tables and the summary are made while the run goes on, so a run's peak is there, the feed most of it
PAGED_ABOVE_BYTES = 64 * 2**20


def available() -> bool:
    """Whether this platform can release pages of a shared file mapping without losing them."""
    return sys.platform.startswith("linux") and hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap.mmap, "madvise")


class PagedArrays:
    """Arrays of shape (rows, columns) or (rows,) in one unnamed file under `folder` (a run's output
    folder: the same disk as its outputs, and outside the run folder, whose files are all hashed: where
    a filesystem cannot make a file without a name, Python names it and unlinks it, and NFS keeps a
    .nfsXXXX file while it is open)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        with _scratch_errors(self.folder):
            self._file = tempfile.TemporaryFile(dir=folder, prefix=".xmargin-feed-")
        self._size = 0
        self._maps: list[tuple[mmap.mmap, int, int, int, np.ndarray]] = []  # (mapping, rows, columns, item size, array)

    def empty(self, shape: tuple, dtype, fill=None) -> np.ndarray:
        """A new column-major array in the file (zeros, or `fill` written one column at a time with
        each column's pages released after it)."""
        dtype = np.dtype(dtype)
        rows, columns = (shape[0], 1) if len(shape) == 1 else shape
        nbytes = rows * columns * dtype.itemsize
        length = -(-max(nbytes, 1) // mmap.PAGESIZE) * mmap.PAGESIZE
        with _scratch_errors(self.folder):
            # blocks reserved now: a full disk is an OSError (ENOSPC) here, not a SIGBUS when a page is written
            os.posix_fallocate(self._file.fileno(), self._size, length)
            mapping = mmap.mmap(self._file.fileno(), length, flags=mmap.MAP_SHARED,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=self._size)
        self._size += length
        flat = np.frombuffer(mapping, dtype=dtype, count=rows * columns)
        self._maps.append((mapping, rows, columns, dtype.itemsize, flat))
        array = flat if len(shape) == 1 else flat.reshape(columns, rows).T
        if fill is not None:
            for column in range(columns):
                (array if len(shape) == 1 else array[:, column])[...] = fill
                self._drop(mapping, column * rows * dtype.itemsize, (column + 1) * rows * dtype.itemsize)
        return array

    def copy(self, values: np.ndarray) -> np.ndarray:
        """A copy of `values` in the file (its pages released as they are written)."""
        array = self.empty(values.shape, values.dtype)
        if values.ndim == 1:
            array[...] = values
        else:
            for column in range(values.shape[1]):
                array[:, column] = values[:, column]
                self.release_column(array, column)
        self.release()
        return array

    def release_column(self, array: np.ndarray, column: int, before_row: int | None = None) -> None:
        """Drop the pages of rows [0, before_row) (all when None) of one column of an array made here."""
        for mapping, rows, columns, itemsize, flat in self._maps:
            if np.may_share_memory(flat, array):
                upto = rows if before_row is None else min(max(before_row, 0), rows)
                self._drop(mapping, column * rows * itemsize, (column * rows + upto) * itemsize)
                return

    def release(self, before_row: int | None = None) -> None:
        """Drop the pages holding rows [0, before_row) of every array (all rows when None) from the
        process's memory; the numbers stay in the file."""
        for mapping, rows, columns, itemsize, _ in self._maps:
            upto = rows if before_row is None else min(max(before_row, 0), rows)
            if upto == rows and columns > 1:
                self._drop(mapping, 0, rows * columns * itemsize)
                continue
            for column in range(columns):
                start = column * rows * itemsize
                self._drop(mapping, start, start + upto * itemsize)

    @staticmethod
    def _drop(mapping: mmap.mmap, start: int, stop: int) -> None:
        """madvise(DONTNEED) over the whole pages inside [start, stop) bytes of `mapping`."""
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = stop // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


@contextlib.contextmanager
def _scratch_errors(folder: Path):
    """An OSError of the feed's file in `folder` (a quota, a file size limit, no address space or file
    descriptors left for a mapping) becomes a RunError naming that folder: the dataset is fine, so
    the caller must not report it unreadable. A full disk (ENOSPC) goes on as it is, for the
    writer's disk-full message."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise RunError(f"{folder}: cannot keep the run's price arrays in a file there ({type(exc).__name__}: {exc}); "
                       "a long book's prices are kept on the disk of the run's output folder. Fix: free space on "
                       "that disk (or raise its quota), or choose another --out.") from exc


def copy_into(store: PagedArrays | None, values: np.ndarray) -> np.ndarray:
    """A copy of a feed array held as a feed holds its own: column-major, in `store` when it is paged."""
    return values.copy(order="F") if store is None else store.copy(values)


RAM_FILESYSTEMS = {"tmpfs", "ramfs"}  # a file there is memory too: paging into it would only hide it


def filesystem(folder: str | Path) -> str | None:
    """The type of the filesystem holding `folder` ("ext4", "tmpfs", ...: Linux /proc/self/mountinfo,
    the last mount of its device), None when it cannot be told."""
    try:
        device = os.stat(folder).st_dev
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    wanted, found = f"{os.major(device)}:{os.minor(device)}", None
    for line in lines:
        head, separator, tail = line.partition(" - ")
        fields = head.split()
        if separator and len(fields) > 2 and fields[2] == wanted and tail.split():
            found = tail.split()[0]
    return found


def store_for(folder: str | Path | None, nbytes: int) -> PagedArrays | None:
    """A PagedArrays under `folder` for a feed of `nbytes`, or None (keep it in memory): no folder,
    a small feed (`PAGED_ABOVE_BYTES`), a platform without `available()` paging, or a folder on a
    RAM-backed filesystem (`RAM_FILESYSTEMS`: the pages given back would still be memory)."""
    if folder is None or nbytes <= PAGED_ABOVE_BYTES or not available() or filesystem(folder) in RAM_FILESYSTEMS:
        return None
    return PagedArrays(folder)
