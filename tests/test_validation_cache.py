"""The validation report is reused only while the dataset's bytes and the validator are unchanged."""

import polars as pl

from xmargin.dataset import checked
from xmargin.dataset.checked import validate_dataset_cached
from xmargin.dataset.synth import SynthParameters, synthesize
from xmargin.dataset.validate import validate_dataset


def test_cached_report_equals_a_fresh_check_and_a_changed_file_is_checked_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XMARGIN_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    synthesize(folder, SynthParameters(days=2, timeframe="1h", seed=3))
    calls = []
    real = checked.validate_dataset
    monkeypatch.setattr(checked, "validate_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = validate_dataset_cached(folder)
    second = validate_dataset_cached(folder)
    assert len(calls) == 1  # the second report came from the cache
    assert first == second == validate_dataset(folder) and first.ok
    assert len(list((tmp_path / "cache" / "validation").glob("*.json"))) == 1

    # break one bar: the bytes change, the dataset is checked again and the error is reported
    path = sorted((folder / "bars").rglob("*.parquet"))[0]
    frame = pl.read_parquet(path)
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("close"))
                       .alias("close")).write_parquet(path)
    third = validate_dataset_cached(folder)
    assert len(calls) == 2 and not third.ok
    assert any(p.check == "bad price" and p.column == "close" for p in third.errors)
    assert validate_dataset_cached(folder) == third and len(calls) == 2
