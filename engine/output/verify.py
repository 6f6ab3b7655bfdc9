"""`verify`: replay a run's event log and check everything the run folder claims.

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
from xmargin.output.writer import final_state
from xmargin.output.projections import PROJECTIONS
from xmargin.output.results import open_run
from xmargin.ledger.state import Ledger


def verify_run(path: str | Path, tolerance: float = 1e-6) -> list[str]:
    """Problems found (an empty list means the run checks out)."""
    run = open_run(path)
    path = Path(path)
    problems = []
    manifest = run.manifest
    digest = file_hash(path / "events.arrow")
    if digest != manifest.get("events_sha256"):
        problems.append(f"events.arrow sha256 {digest} differs from the manifest's {manifest.get('events_sha256')}")
    table = read_ipc(path / "events.arrow")
    missing = [name for name in event_schema().names if name not in table.schema.names]
    if missing:
        return problems + [f"events.arrow has no columns {missing}: the run was written by another version of "
                           f"xmargin ({manifest.get('versions', {}).get('xmargin', '?')}); run its config again "
                           "to verify it with this one"]
    events = table_to_events(table)
    modes = manifest["resolved"]["margin_modes"]
    ledger = Ledger.create(modes)
    # a pool's wallet is checkable against the log where the mode pools each asset on its own
    single = [exchange for exchange, mode in modes.items() if MODES[mode].pools_are_assets]
    equity = (run.equity.filter(pl.col("exchange").is_in(single))
              .select("events_applied", "exchange", "asset", "cross_wallet_balance", "isolated_margin").collect())
    balances = (run.collateral.select("events_applied", "exchange", "asset",
                                      pl.col("balance").alias("cross_wallet_balance"),
                                      pl.lit(None, dtype=pl.Float64).alias("isolated_margin")).collect())
    checkpoints = {}
    for row in pl.concat([equity, balances]).iter_rows(named=True):
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
    for name, project in PROJECTIONS.items():
        expected = project(lazy).collect()
        actual = getattr(run, name).collect()
        try:
            assert_frame_equal(actual, expected)
        except AssertionError as exc:
            problems.append(f"{name}.arrow differs from the projection of the event log: {str(exc).splitlines()[0]}")
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
