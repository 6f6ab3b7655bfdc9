"""FundingArbitrage through a fake view: per-hour comparison, direction, equal legs, silo budgets,
exit, transfers (CollateralRebalancer), params."""

import pytest

from xmargin.ledger.commands import Transfer
from xmargin.strategies.collateral import CollateralRebalancer
from xmargin.strategies.funding_arbitrage import FundingArbitrage
from xmargin.testing import FakeView, pool, wake

BN, HL = "binance:BTC/USDT:USDT", "hyperliquid:BTC/USDC:USDC"
PARAMS = {"perps": [BN, HL], "notional": 30_000, "leverage": 3, "entry_apr": 0.10, "exit_apr": 0.02,
          "lookback_hours": 8, "collateral_buffer": 0.5, "min_transfer": 100}


def make_view(usdt=30_000.0, usdc=30_000.0):
    view = FakeView({BN: {"lot": 0.001, "min_notional": 100.0}, HL: {"lot": 1e-5, "min_notional": 10.0}})
    view.balances[("binance", "USDT")] = usdt
    view.balances[("hyperliquid", "USDC")] = usdc
    view.prices = {BN: 60_000.0, HL: 60_000.0}
    return view


def run_hours(strategy, view, hours, bn_rate, hl_rate):
    out = []
    for _ in range(hours):
        view.funding[BN], view.funding[HL] = bn_rate, hl_rate
        view.advance(1)
        out.append(list(strategy.on_wake(view, wake("timer"))))
    return out


def test_compares_per_hour_rates_and_shorts_the_higher_payer():
    strategy, view = FundingArbitrage(PARAMS), make_view()
    # Binance 0.0001 per 8h = 1.25e-5/h; Hyperliquid 3e-5/h: spread 1.75e-5/h = 15.3 %/yr -> enter
    orders = [o for batch in run_hours(strategy, view, 1, 0.0001, 0.00003) for o in batch]
    assert {(o.instrument, o.quantity) for o in orders} == {(BN, 0.5), (HL, -0.5)}  # 30k / 60k
    assert strategy.spread_apr(view) == pytest.approx((0.00003 - 0.0001 / 8) * 8760)


def test_same_8h_rate_is_not_a_spread_when_intervals_differ():
    strategy, view = FundingArbitrage(PARAMS), make_view()
    # 0.0001 per 8h on Binance equals 0.0000125 per 1h on Hyperliquid: no trade
    assert all(batch == [] for batch in run_hours(strategy, view, 10, 0.0001, 0.0000125))


def test_reverse_direction_and_exit():
    strategy, view = FundingArbitrage(PARAMS), make_view()
    first = run_hours(strategy, view, 1, 0.0004, 0.0)[0]  # Binance pays 43.8 %/yr: short Binance
    assert {(o.instrument, o.quantity) for o in first} == {(BN, -0.5), (HL, 0.5)}
    view.set_position(BN, -0.5)
    view.set_position(HL, 0.5)
    assert run_hours(strategy, view, 1, 0.0004, 0.0) == [[]]
    # the mean over the 8h window falls below 2 %/yr once Hyperliquid pays as much per hour
    batches = run_hours(strategy, view, 9, 0.0004, 0.00005)
    exits = [b for b in batches if b]
    assert {(o.instrument, o.quantity, o.reduce_only) for o in exits[0]} == {(BN, 0.5, True), (HL, -0.5, True)}


def test_each_silo_caps_the_legs():
    # Hyperliquid has only 6,000 USDC: 0.5 x 6,000 / (1/3 + 0.001) = 8,973 -> 0.149 BTC on both legs
    strategy, view = FundingArbitrage(PARAMS), make_view(usdc=6_000.0)
    orders = run_hours(strategy, view, 1, 0.0, 0.0001)[0]
    assert sorted((o.instrument, o.quantity) for o in orders) == [(BN, pytest.approx(0.149)),
                                                                  (HL, pytest.approx(-0.149))]


def test_rebalances_drifted_legs():
    strategy, view = FundingArbitrage(PARAMS), make_view()
    run_hours(strategy, view, 1, 0.0, 0.0001)
    view.set_position(BN, 0.5)
    view.set_position(HL, -0.4)  # e.g. a partial fill
    orders = run_hours(strategy, view, 1, 0.0, 0.0001)[0]
    assert [(o.instrument, o.quantity) for o in orders] == [(HL, pytest.approx(-0.1))]


def test_tops_up_the_short_silo_with_an_asset_it_accepts():
    params = {**PARAMS, "transfer_trigger": 0.45, "collateral_assets": {"binance": ["USDT"],
                                                                           "hyperliquid": ["USDC"]}}
    strategy, view = FundingArbitrage(params), make_view()
    view.balances[("binance", "USDC")] = 10_000.0  # a USDC reserve on Binance
    run_hours(strategy, view, 1, 0.0, 0.0001)
    view.set_position(BN, 0.5)
    view.set_position(HL, -0.5)
    view.pools[("hyperliquid", "USDC")] = pool("hyperliquid", "USDC", 20_000.0, initial_margin=12_000.0)
    commands = run_hours(strategy, view, 1, 0.0, 0.0001)[0]
    # free fraction 0.4 < 0.45: bring it to 0.5 -> x = (0.5 x 20,000 - 8,000) / 0.5 = 4,000 USDC
    assert commands == [Transfer("USDC", 4000.0, "binance", "hyperliquid")]
    view.transfers = [object()]  # in flight: legs are not resized meanwhile
    view.transfers[0] = type("T", (), {"destination": "hyperliquid"})()
    assert run_hours(strategy, view, 1, 0.0, 0.0001) == [[]]


def test_rebalancer_never_converts_assets():
    rebalancer = CollateralRebalancer({"binance": ("USDT",), "hyperliquid": ("USDC",)}, trigger=0.45, target=0.5)
    view = make_view(usdt=100_000.0)
    view.pools[("hyperliquid", "USDC")] = pool("hyperliquid", "USDC", 20_000.0, initial_margin=15_000.0)
    assert rebalancer.commands(view) == []  # Binance has only USDT: nothing Hyperliquid can use


def test_rebalancer_keeps_the_source_buffer():
    rebalancer = CollateralRebalancer({"a": ("USDC",), "b": ("USDC",)}, trigger=0.45, target=0.5, fee_allowance=1.0)
    view = FakeView({"a:BTC/USDC:USDC": {}, "b:BTC/USDC:USDC": {}})
    view.balances[("a", "USDC")] = 12_000.0
    view.pools[("a", "USDC")] = pool("a", "USDC", 12_000.0, initial_margin=4_000.0)  # spare: (8k - 6k) / 0.5
    view.pools[("b", "USDC")] = pool("b", "USDC", 10_000.0, initial_margin=8_000.0)  # needs (5k - 2k) / 0.5
    assert rebalancer.commands(view) == [Transfer("USDC", 3999.0, "a", "b")]


@pytest.mark.parametrize("bad, message", [
    ({"perps": [BN]}, "perps = .*: must be two perp keys"),
    ({"perps": [BN, "binance:ETH/USDT:USDT"]}, "must be on different exchanges"),
    ({"exit_apr": 0.2}, r"exit_apr = 0.2: must be < entry_apr"),
    ({"transfer_trigger": 0.6}, r"transfer_trigger = 0.6: must be <= collateral_buffer"),
    ({"collateral_buffer": -0.1}, r"collateral_buffer = -0.1: must be >= 0 and < 1"),
    ({"collateral_assets": {"okx": ["USDT"]}}, r"collateral_assets: unknown exchanges \['okx'\]"),
    ({"leverage": 0}, "leverage = 0: must be > 0"),
])
def test_bad_params(bad, message):
    with pytest.raises(ValueError, match=message):
        FundingArbitrage({**PARAMS, **bad})
