"""Shared set-up of the integrity tests (issue 12): a small synthetic dataset, a config writer,
the CLI, and what "nothing finished-looking was written" means."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.synth import SynthParameters, synthesize

BTC = "binance:BTC/USDT:USDT"
ETH = "binance:ETH/USDT:USDT"
_CACHE: dict = {}


def dataset(folder: Path, days: int = 3) -> Path:
    """A 1h synthetic dataset (binance + hyperliquid, BTC and ETH; bars, mark, funding) in `folder`."""
    if days not in _CACHE:  # generated once per test process (about 0.1 s), then copied
        source = Path(tempfile.mkdtemp(prefix="xmargin-integrity-")) / f"synth-{days}d"
        synthesize(source, SynthParameters(days=days, timeframe="1h", assets=("BTC", "ETH")))
        _CACHE[days] = source
    shutil.copytree(_CACHE[days], folder)
    return folder


def config(path: Path, data: Path, run: str = "", exchanges: str | None = None, strategy: str = "hold",
           params: str = f'positions = {{ "{BTC}" = 20000, "{ETH}" = -20000 }}') -> Path:
    """A run config at `path` on dataset `data`; `run` adds lines to [run]."""
    exchanges = exchanges if exchanges is not None else (
        '[exchanges.binance]\nrules = "binance-usdm"\ncollateral = { USDT = 20000 }\nleverage = 5\n')
    path.write_text(f'[run]\ndataset = "{data}"\nstrategy = "{strategy}"\n{run}\n\n[strategy.params]\n{params}\n\n'
                    f"{exchanges}")
    return path


def cli(*args, cwd: Path | None = None):
    """`xmargin ARGS` through click's runner (stdout and stderr together in `.output`)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def finished_runs(root: Path) -> list[Path]:
    """Every folder under `root` that looks like a finished run (holds a manifest.json)."""
    return sorted(p.parent for p in Path(root).rglob("manifest.json")) if Path(root).exists() else []


def tree_digest(root: Path) -> dict:
    """Relative path -> sha256 of every file under `root`: a folder's exact bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def rewrite(file: Path, change) -> None:
    """Replace a Parquet table by `change(frame)`."""
    frame = change(pl.read_parquet(file))
    frame.write_parquet(file)


def edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data, indent=2))


def assert_override_refused(tmp_path: Path, override: str, text: str) -> None:
    """`xmargin run --set OVERRIDE` on a good config exits 2 with `text` and writes nothing."""
    path = config(tmp_path / "c.toml", dataset(tmp_path / "d"))
    result = cli("run", path, "--out", tmp_path / "runs", "--quiet", "--set", override)
    assert result.exit_code == 2 and text in result.output, result.output
    assert not (tmp_path / "runs").exists()


def finished(folder: Path) -> Path:
    """A copy in `folder` of a runs folder holding two finished runs `a` and `b` of the default config
    (made once per test process)."""
    if "runs" not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="xmargin-integrity-runs-"))
        path = config(root / "c.toml", dataset(root / "d"))
        for run_id in ("a", "b"):
            assert cli("run", path, "--out", root / "runs", "--run-id", run_id, "--quiet").exit_code == 0
        _CACHE["runs"] = root / "runs"
    shutil.copytree(_CACHE["runs"], folder)
    return folder
