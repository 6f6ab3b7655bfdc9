"""Work shared between snapshots must give what each snapshot alone gives.

The output phase reads each account state once (`snapshot_moments`: two snapshots of one state in
an hourly book, a sample then the next event's), builds its units once (`snapshot_units`) and
stacks each distinct unit object once (`stack_repeated`). These tests hold those paths equal to the
plain ones, array for array, on real runs of every margin mode family: cross and isolated (units
shared between the snapshots of a state), multi-asset and portfolio (units built per snapshot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from xmargin.config import load_config, parse_config
from xmargin.margin.modes import account_units
from xmargin.margin.units import distinct_objects, stack, stack_repeated
from xmargin.output.snapshots import snapshot_moments, snapshot_units
from xmargin.sim.loop import run_backtest

ROOT = Path(__file__).resolve().parents[1]

ARRAYS = ("quantity", "entry", "size", "table", "leverage", "fixed_maintenance", "scale", "unit", "base", "reserved")


def _multi_asset():
    return parse_config({
        "run": {"dataset": str(ROOT / "datasets" / "sample"), "strategy": "hold", "start": "2025-01-01",
                "end": "2025-01-10"},
        "strategy": {"params": {"positions": {"binance:ETH/USDT:USDT": -30000, "binance:BTC/USDT:USDT": 10000},
                                "margin_modes": {"binance:BTC/USDT:USDT": "isolated"}}},
        "exchanges": {"binance": {"rules": "binance-usdm", "margin_mode": "multi-asset",
                                  "collateral": {"BTC": 0.2, "ETH": 1.0, "USDT": 500}}}})


RUNS = {
    "cross": lambda: load_config(ROOT / "examples" / "hold.toml", end="2024-10-10"),
    "isolated": lambda: load_config(ROOT / "examples" / "core_hedge_isolated.toml"),
    "multi-asset": _multi_asset,
    "portfolio": lambda: load_config(ROOT / "examples" / "portfolio_basis.toml"),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def result(request):
    return run_backtest(RUNS[request.param]())


def _assert_same_legs(got, expected):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name
    assert got.tables == expected.tables
    assert len(got.requirements) == len(expected.requirements)
    for (unit, legs, model), (unit_e, legs_e, model_e) in zip(got.requirements, expected.requirements):
        assert unit == unit_e and model is model_e
        np.testing.assert_array_equal(legs, legs_e)


def test_moments_number_states_by_first_snapshot_and_read_every_snapshot(result):
    snapshots = result.snapshots
    moments = snapshot_moments(snapshots)
    assert moments.ts.tolist() == [s.ts for s in snapshots]
    assert moments.reason == [s.reason for s in snapshots]
    assert moments.exchange == [s.account.exchange for s in snapshots]
    assert moments.events_applied.tolist() == [s.events_applied for s in snapshots]
    assert moments.row.tolist() == [s.row for s in snapshots]
    assert all(moments.accounts[state] is s.account for state, s in zip(moments.state.tolist(), snapshots))
    assert moments.first.tolist() == sorted(moments.first.tolist())  # numbered in order of first snapshot
    assert all(moments.state[first] == state for state, first in enumerate(moments.first.tolist()))
    assert len(moments.accounts) == len({id(s.account) for s in snapshots}) < len(snapshots)


def test_units_per_state_are_each_snapshots_own_units(result):
    """Every snapshot's units, built at that snapshot (its row's marks, its time), have the rows,
    names and constants of the units the output phase lists for it."""
    snapshots, catalog, feed = result.snapshots, result.catalog, result.feed
    units, owner = snapshot_units(snapshots, catalog, feed)
    assert len(units) == len(owner)
    expected = []
    for n, snapshot in enumerate(snapshots):
        built = account_units(catalog, snapshot.account, feed.mark_close[snapshot.row], snapshot.ts)
        expected.extend((n, unit) for unit in built)
    assert [n for n, _ in expected] == np.asarray(owner).tolist()
    for got, (_, want) in zip(units, expected):
        assert (got.exchange, got.asset, got.name, got.isolated, got.instruments, got.level, got.positions) == \
            (want.exchange, want.asset, want.name, want.isolated, want.instruments, want.level, want.positions)
        assert got.rows == want.rows and got.base == want.base
        assert (got.requirement is None) == (want.requirement is None)


def test_repeated_units_stack_to_the_plain_stack(result):
    """`stack_repeated` over the output's listing (units shared by the snapshots of a state in cross
    and isolated runs) and over a shuffled listing with repeats of every unit (portfolio units with
    their whole-unit models included) equals `stack` of the same list."""
    units, _ = snapshot_units(result.snapshots, result.catalog, result.feed)
    reserved = np.linspace(0.0, 1.0, len(units))
    legs, columns = stack_repeated(units, reserved)
    _assert_same_legs(legs, stack(units, reserved))
    assert columns.tolist() == [row[0] for unit in units for row in unit.rows]

    distinct = [units[k] for k in distinct_objects(units)[0].tolist()][:40]
    rng = np.random.default_rng(7)
    listing = [distinct[k] for k in rng.integers(0, len(distinct), size=3 * len(distinct))]
    legs, columns = stack_repeated(listing)
    assert len(distinct_objects(listing)[0]) < len(listing)
    _assert_same_legs(legs, stack(listing))
    assert columns.tolist() == [row[0] for unit in listing for row in unit.rows]
    if any(unit.requirement is not None for unit in listing):
        assert legs.requirements


def test_shared_states_are_what_hourly_books_have():
    """The sharing is not idle: in an hourly book each account state is valued twice (the hour's
    sample, then the next event's snapshot), and cross units are listed once per snapshot."""
    result = run_backtest(RUNS["cross"]())
    moments = snapshot_moments(result.snapshots)
    units, _ = snapshot_units(result.snapshots, result.catalog, result.feed, moments)
    assert len(moments.accounts) < 0.75 * len(result.snapshots)
    assert len(distinct_objects(units)[0]) < 0.75 * len(units)


def test_a_snapshots_rows_do_not_depend_on_the_snapshots_valued_with_it(result):
    """Each snapshot's equity, positions and collateral rows are the same whether it is valued with
    the whole run or with every third snapshot in reverse (its account states numbered in another
    order, most of them listed once instead of twice)."""
    from xmargin.output.snapshots import project

    snapshots, catalog, feed = result.snapshots, result.catalog, result.feed
    picked = list(range(len(snapshots)))[::-3]
    whole = project(snapshots, catalog, feed)
    part = project([snapshots[n] for n in picked], catalog, feed)
    position = {n: k for k, n in enumerate(picked)}
    for name, got, expected in zip(("equity", "positions", "collateral"), part, whole):
        expected = (expected.filter(pl.col("snapshot").is_in(picked))
                    .with_columns(pl.col("snapshot").replace_strict(position, return_dtype=pl.Int64))
                    .sort("snapshot", maintain_order=True))
        assert got.height == expected.height > 0, name
        assert got.equals(expected), name
