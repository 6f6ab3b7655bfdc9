"""xmargin.dataset.paging: a long book's price arrays in a file-backed mapping whose pages a run gives
back as it passes them. The numbers never change (the same arrays, the same run folder byte for byte);
only the memory the process holds does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import xmargin.dataset.paging as paging
import xmargin.sim.loop as loop
from xmargin.config import load_config
from xmargin.dataset.feed import load_feed
from xmargin.dataset.paging import PagedArrays
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not paging.available(), reason="paging needs Linux madvise(MADV_DONTNEED)")


@pytest.fixture
def tmp_path(tmp_path):
    """A test folder on disk: paging keeps a feed in memory in a RAM-backed one (tmpfs)."""
    if paging.filesystem(tmp_path) in paging.RAM_FILESYSTEMS:
        pytest.skip(f"{tmp_path} is on {paging.filesystem(tmp_path)}: paging is off there by design")
    return tmp_path


def _resident_file_mb() -> float:
    """This process's resident file-backed memory (Linux /proc/self/status RssFile), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


@linux_only
def test_released_rows_keep_their_numbers(tmp_path):
    store = PagedArrays(tmp_path)
    prices = store.empty((5_000, 3), np.float64, fill=np.nan)
    assert prices.flags.f_contiguous and np.isnan(prices).all()
    expected = np.arange(15_000, dtype=np.float64).reshape(3, 5_000).T * 1.5
    prices[:] = expected
    times = store.copy(np.arange(5_000, dtype=np.int64) * 60)
    store.release(2_500)
    assert np.array_equal(prices, expected) and times[4_999] == 299_940
    store.release()
    assert np.array_equal(prices, expected)
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing is left in the run folder


@linux_only
def test_release_gives_the_pages_back(tmp_path):
    store = PagedArrays(tmp_path)
    array = store.empty((2_000_000, 4), np.float64)  # 64 MB
    array[:] = 1.0
    written = _resident_file_mb()
    store.release(1_000_000)  # half of every column
    half = _resident_file_mb()
    store.release()
    released = _resident_file_mb()
    assert written - half > 28 and written - released > 60, (written, half, released)
    assert float(array[1_999_999, 3]) == 1.0  # read back from the file


@linux_only
def test_a_paged_feed_holds_the_same_arrays(monkeypatch, tmp_path):
    config = load_config(ROOT / "examples/demo.toml")
    keys = ["binance:BTC/USDT:USDT", "hyperliquid:BTC/USDC:USDC"]
    plain = load_feed(config.dataset, keys, config.start, config.end, scratch=tmp_path)
    assert plain.paged is None  # small: kept in memory
    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    paged = load_feed(config.dataset, keys, config.start, config.end, scratch=tmp_path)
    assert paged.paged is not None
    for name in ("ts", "open", "high", "low", "close", "has_bar", "mark_open", "mark_high", "mark_low", "mark_close"):
        a, b = getattr(plain, name), getattr(paged, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes(order="F") == b.tobytes(order="F"), name
    assert paged.mark_source == plain.mark_source and np.array_equal(paged.funding_row, plain.funding_row)


@linux_only
@pytest.mark.parametrize("example", ["demo", "basis_carry"])
def test_a_paged_run_writes_the_same_folder(monkeypatch, tmp_path, example):
    config = load_config(ROOT / f"examples/{example}.toml", out=str(tmp_path))
    plain = execute(config, run_id="plain", keep_result=False)
    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    monkeypatch.setattr(loop, "RELEASE_ROWS", 97)  # releases all along the run
    paged = execute(config, run_id="paged", keep_result=False)
    files = sorted(p.name for p in plain.path.iterdir() if p.suffix == ".arrow")
    assert "events.arrow" in files and "equity.arrow" in files
    for name in files:
        assert (plain.path / name).read_bytes() == (paged.path / name).read_bytes(), name
    timing = {"run_id": "", "run_seconds": 0, "load_seconds": 0}
    assert {**plain.summary, **timing} == {**paged.summary, **timing}
    assert sorted(p.name for p in paged.path.iterdir()) == sorted(p.name for p in plain.path.iterdir())


def test_other_platforms_keep_the_feed_in_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not paging.available()
    assert paging.store_for(tmp_path, 10 * 2**30) is None


@linux_only
def test_a_full_disk_while_paging_the_feed_is_the_disk_full_message(monkeypatch, tmp_path):
    """The feed's file reserves its blocks before it is mapped: a disk without room for it refuses the
    run with the writer's disk-full message (exit 2, no folder left), not a bus error on a page write."""
    import errno
    import os

    from click.testing import CliRunner

    from xmargin.cli.main import main

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    monkeypatch.setattr(os, "posix_fallocate", full)
    result = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "hold.toml"), "--out", str(tmp_path),
                                       "--no-validate", "--run-id", "full"])
    assert result.exit_code == 2, result.output
    assert "the disk filled up" in result.output
    assert list(tmp_path.iterdir()) == []


@linux_only
@pytest.mark.parametrize("failure", ["fallocate", "mmap"])
def test_a_feed_file_that_cannot_be_made_is_not_blamed_on_the_dataset(monkeypatch, tmp_path, failure):
    """The feed's file lives in the output folder: an error there other than a full disk (a disk quota
    on the output folder, no address space left for the mapping) names that folder and its fix, not
    'cannot read the dataset' with `xmargin data validate` (the dataset is fine); nothing is left."""
    import errno
    import mmap
    import os

    from click.testing import CliRunner

    from xmargin.cli.main import main

    def quota(fd, offset, length):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    class NoAddressSpace:
        madvise = mmap.mmap.madvise  # (still a platform that pages)

        def __init__(self, *args, **kwargs):
            raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    if failure == "fallocate":
        monkeypatch.setattr(os, "posix_fallocate", quota)
    else:
        monkeypatch.setattr(paging.mmap, "mmap", NoAddressSpace)
    result = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "hold.toml"), "--out", str(tmp_path),
                                       "--no-validate", "--run-id", "quota"])
    assert result.exit_code == 2, result.output
    assert "cannot read the dataset" not in result.output and "data validate" not in result.output
    assert "cannot keep the run's price arrays in a file there" in result.output
    assert ("Disk quota exceeded" if failure == "fallocate" else "Cannot allocate memory") in result.output
    assert result.output.startswith(f"error: {tmp_path}: ") and "another --out" in result.output
    assert list(tmp_path.iterdir()) == []


@linux_only
def test_a_folder_in_memory_is_not_paged(tmp_path):
    """A feed is not paged into a RAM-backed folder (tmpfs: its pages would still be memory, only hidden
    from the run's RSS); a folder on disk is."""
    assert paging.filesystem(tmp_path) not in paging.RAM_FILESYSTEMS
    assert paging.store_for(tmp_path, 10 * 2**30) is not None
    shm = Path("/dev/shm")
    if not shm.is_dir() or paging.filesystem(shm) != "tmpfs":
        pytest.skip("no tmpfs /dev/shm here")
    assert paging.store_for(shm, 10 * 2**30) is None
