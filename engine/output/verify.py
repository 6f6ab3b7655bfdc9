"""`verify`: replay a run's event log and check everything the run folder claims.

0. every file's sha256 matches the manifest (so no table, summary or config can be edited
   unnoticed) and the manifest's own digest matches its content; summary.json's figures are
   recomputed from the run's tables;
1. the log's sha256 matches the manifest;
2. replaying the log from the initial state reproduces the final balances and positions exactly;
3. every projection table (fills, funding, liquidations, transfers) equals what the log implies;
4. every collateral row's balance (and every single-asset equity row's wallet) equals the
   replayed ledger after the events it had seen;
5. money is conserved per account and asset: wallet change = deposits + realised PnL + funding
   - fees + insurance + transfers in - transfers out - withdrawal fees (+ spot flows and
   collateral conversions).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from xmargin.ledger.flows import flows
from xmargin.margin.modes import MODES
from xmargin.output.eventlog import event_schema, file_hash, read_ipc, table_to_events
from xmargin.ledger.apply import apply
from xmargin.output.writer import MANIFEST_DIGEST, final_state, json_safe, manifest_digest
from xmargin.analysis.summary import SUMMARY_VERSION, summarize
from xmargin.output.tables import OUTPUT_TABLES
from xmargin.output.report import REPORT_FILE
from xmargin.output.results import open_run
from xmargin.ledger.state import Ledger


def _check_files(path: Path, manifest: dict) -> list[str]:
    """Every file of the folder against the sha256 the manifest recorded, and the manifest's own digest."""
    problems = []
    if MANIFEST_DIGEST in manifest and manifest_digest(manifest) != manifest[MANIFEST_DIGEST]:
        problems.append("manifest.json was edited after the run wrote it (its digest does not match its content)")
    recorded = manifest.get("files")
    if recorded is None:
        return problems  # written before files were hashed: only the log hash below applies
    present = {f.name for f in path.iterdir() if f.is_file() and f.name != "manifest.json"}
    if REPORT_FILE not in recorded:  # written into the folder afterwards by `xmargin report`: not a result
        present.discard(REPORT_FILE)
    for name in sorted(set(recorded) | present):
        if name not in present:
            problems.append(f"{name} is missing from the run folder")
        elif name not in recorded:
            problems.append(f"{name} was not written by the run (not in the manifest)")
        elif file_hash(path / name) != recorded[name]:
            problems.append(f"{name} was changed after the run wrote it (sha256 differs from the manifest's)")
    return problems


def _check_summary(run) -> list[str]:
    """summary.json's figures recomputed from the run's tables."""
    if any(name not in run.tables for name in ("events", "equity", "collateral", "positions")):
        return []  # an older run without every table: its summary cannot be recomputed here
    stored = run.summary
    if summary_version(run) != SUMMARY_VERSION:
        return []  # its figures were defined otherwise then: not comparable (`summary_note`)
    derived = ("summary_version", "exchanges", "total", "money_note", "exposure", "rejections", "warnings", "one_legged")
    meta = {k: v for k, v in stored.items() if k not in derived}
    one_legged = stored.get("one_legged") or {}
    tables = {name: getattr(run, name).collect() for name in ("events", "equity", "collateral", "positions")}
    recomputed = summarize(tables["events"], tables["equity"], meta, collateral=tables["collateral"],
                           positions=tables["positions"], one_legged_ratio=one_legged.get("ratio", 0.5),
                           one_legged_after_hours=one_legged.get("after_hours", 8.0))
    recomputed = json.loads(json.dumps(json_safe(recomputed)))
    return [f"summary.json {where} is {a!r} but the run's tables give {b!r}"
            for where, a, b in _differences(stored, recomputed, "")][:5]


def summary_version(run) -> int:
    """The summary definitions a run's summary.json was written under (1: before they were numbered)."""
    version = run.summary.get("summary_version", 1)
    return version if isinstance(version, int) else 0


def summary_note(run) -> str:
    """What `xmargin verify` says of a summary.json written under other figure definitions ("" when
    it was written under this xmargin's): its figures are not recomputed, the rest is verified."""
    version = summary_version(run)
    if version == SUMMARY_VERSION:
        return ""
    return (f"summary.json was written under summary definitions {version} (this xmargin: {SUMMARY_VERSION}; see "
            "xmargin.analysis.summary.SUMMARY_VERSION), so its figures were not recomputed; run the config again "
            "for a summary under the current definitions")


def valuation_note(run) -> str:
    """What `xmargin verify` says of valuation tables written before rows carried their moment (run-folder
    schema_version 1 or older: no `valued_at`, every row at its bar's close marks); "" otherwise."""
    version = int(run.manifest.get("schema_version", 0))
    if version >= 2 or "equity" not in run.tables:
        return ""
    return (f"the valuation tables were written under run-folder schema_version {version}: every row, an event's or "
            "the start's too, is valued at its bar's close (no valued_at column); run the config again for rows "
            "valued at their own moment")


def _differences(a, b, where: str):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _differences(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if abs(a - b) > 1e-9 * max(1.0, abs(a), abs(b)):
            yield where, a, b
    elif a != b:
        yield where, a, b


def verify_run(path: str | Path, tolerance: float = 1e-6) -> list[str]:
    """Problems found (an empty list means the run checks out)."""
    run = open_run(path)
    path = Path(path)
    manifest = run.manifest
    problems = _check_files(path, manifest)
    digest = file_hash(path / "events.arrow")
    if digest != manifest.get("events_sha256"):
        problems.append(f"events.arrow sha256 {digest} differs from the manifest's {manifest.get('events_sha256')}")
    try:
        table = read_ipc(path / "events.arrow")
    except Exception as exc:  # truncated or not Arrow at all
        return problems + [f"events.arrow cannot be read ({str(exc).splitlines()[0]}); the run folder is damaged"]
    if not isinstance(manifest.get("final_state"), dict) or not isinstance(manifest.get("resolved"), dict):
        return problems + ["manifest.json lacks final_state or resolved; the run folder is damaged"]
    try:
        problems.extend(_check_summary(run))
    except Exception as exc:
        problems.append(f"summary.json cannot be recomputed from the run's tables ({str(exc).splitlines()[0]})")
    missing = [name for name in event_schema().names if name not in table.schema.names]
    if missing:
        return problems + [f"events.arrow has no columns {missing}: the run was written by another version of "
                           f"xmargin ({manifest.get('versions', {}).get('xmargin', '?')}); run its config again "
                           "to verify it with this one"]
    events = table_to_events(table)
    modes = manifest["resolved"]["margin_modes"]
    ledger = Ledger.create(modes)
    # a pool's wallet is checkable against the log where the mode pools each asset on its own
    single = [exchange for exchange, mode in modes.items() if mode in MODES and MODES[mode].pools_are_assets]
    equity = (run.equity.filter(pl.col("exchange").is_in(single))
              .select("events_applied", "exchange", "asset", "cross_wallet_balance", "isolated_margin").collect())
    snapshots = [equity]
    if "collateral" in run.tables:  # runs written before the collateral table have only the equity rows
        snapshots.append(run.collateral.select("events_applied", "exchange", "asset",
                                               pl.col("balance").alias("cross_wallet_balance"),
                                               pl.lit(None, dtype=pl.Float64).alias("isolated_margin")).collect())
    checkpoints = {}
    for row in pl.concat(snapshots).iter_rows(named=True):
        checkpoints.setdefault(row["events_applied"], []).append(row)
    mismatches = []
    for seq in range(len(events) + 1):  # a snapshot after `seq` events is checked before event `seq`
        mismatches.extend(m for row in checkpoints.get(seq, ()) if (m := _check_wallet(ledger, row)))
        if seq < len(events):
            ledger = apply(ledger, events[seq])
    problems.extend(mismatches[:5])
    replayed = json.loads(json.dumps(final_state(ledger)))
    recorded = manifest["final_state"]
    if replayed != recorded:
        for exchange in sorted(set(replayed) | set(recorded)):
            if replayed.get(exchange) != recorded.get(exchange):
                problems.append(f"{exchange}: replayed final state {replayed.get(exchange)} differs from the "
                                f"recorded {recorded.get(exchange)}")
    lazy = pl.from_arrow(table).lazy()
    for spec in OUTPUT_TABLES:
        if spec.source != "projection":
            continue
        expected = pl.from_arrow(spec.conform(spec.project(lazy).collect().to_arrow()))
        actual = getattr(run, spec.name).collect()
        try:
            assert_frame_equal(actual, expected)
        except AssertionError as exc:
            problems.append(f"{spec.file} differs from the projection of the event log: {str(exc).splitlines()[0]}")
    problems.extend(_conservation(events, ledger, tolerance))
    return problems


def _check_wallet(ledger, row) -> str | None:
    """What differs between a snapshot row's wallet and the replayed ledger, or None."""
    account = ledger.accounts[row["exchange"]]
    cross = account.balance(row["asset"])
    isolated = sum(p.isolated_margin for p in account.positions.values() if p.asset == row["asset"])
    isolated_differs = row["isolated_margin"] is not None and abs(isolated - row["isolated_margin"]) > 1e-9
    if cross != row["cross_wallet_balance"] or isolated_differs:
        return (f"equity row after {row['events_applied']} events on {row['exchange']} {row['asset']}: "
                f"wallet {row['cross_wallet_balance']} but the log implies {cross}")
    return None


def _conservation(events, ledger, tolerance: float) -> list[str]:
    """Per account and asset, the wallet (incl. isolated margin) must equal the sum of its flows
    (`xmargin.ledger.flows`, the one conservation rule per event type)."""
    expected: dict = {}
    for event in events:
        for key, amount in flows(event).items():
            expected[key] = expected.get(key, 0.0) + amount
    problems = []
    for (exchange, asset), total in sorted(expected.items()):
        actual = ledger.accounts[exchange].wallet_total(asset)
        if abs(actual - total) > tolerance * max(1.0, abs(total)):
            problems.append(f"money not conserved on {exchange} {asset}: wallet {actual:.8f} but the flows add up "
                            f"to {total:.8f} (difference {actual - total:.3g})")
    return problems
