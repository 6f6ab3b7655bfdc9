"""Trading fees per market: spot fills pay the spot rate, perp fills the derivatives rate, and the
config's `fees` table overrides either (checked against the fill events by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmargin.config import parse_config
from xmargin.errors import ConfigError
from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder
from xmargin.sim.loop import Backtest
from xmargin.sim.strategy import Wakes
from xmargin.venues.fees import FeeRates, market_fees
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import DATA_DIR

SAMPLE = Path(__file__).resolve().parents[1] / "datasets/sample"
SPOT = "binance:BTC/USDT"
PERP = "binance:BTC/USDT:USDT"


class TakeThenMake:
    """Wake 1: market-buy 0.1 BTC spot and market-short 0.1 BTC perp (taker fills). Wake 2: rest a
    limit sell of 0.05 BTC spot 0.2 % above the price and a limit buy of 0.05 perp 0.2 % below it
    (maker fills when a later bar trades through them)."""

    def __init__(self, params):
        self.step = 0

    def wakes(self):
        return Wakes(bars=(SPOT,))

    def on_wake(self, view, wake):
        self.step += 1
        if self.step == 1:
            return [PlaceOrder.market(SPOT, 0.1), PlaceOrder.market(PERP, -0.1, leverage=5)]
        if self.step == 2:
            return [PlaceOrder.limit(SPOT, -0.05, round(view.price(SPOT) * 1.002, 2)),
                    PlaceOrder.limit(PERP, 0.05, round(view.price(PERP) * 0.998, 1), reduce_only=True)]
        return []


def _config(fees=None, rules="binance-usdm"):
    exchange = {"rules": rules, "margin_mode": "cross", "collateral": {"USDT": 20_000}}
    if fees is not None:
        exchange["fees"] = fees
    return parse_config({
        "run": {"dataset": str(SAMPLE), "strategy": "tests.test_fees:TakeThenMake", "start": "2024-10-03",
                "end": "2024-10-06", "instruments": [PERP, SPOT]},
        "exchanges": {"binance": exchange}})


def _fills(config):
    """[(instrument, liquidity, notional, fee amount)] of every fill of a run of `config`."""
    events = Backtest(config).run().events
    fees = {e.order_id: e.amount for e in events if isinstance(e, ev.FeeCharged)}
    return [(e.instrument, e.liquidity, abs(e.quantity) * e.price, fees[e.order_id])
            for e in events if isinstance(e, ev.OrderFilled)]


def _by(fills, instrument, liquidity):
    (found,) = [f for f in fills if f[0] == instrument and f[1] == liquidity]
    return found


def test_rule_sets_carry_spot_fees_apart_from_derivatives():
    binance = load_rules("binance-usdm")
    # Binance regular tier: USD-M futures 0.02 % / 0.05 %, spot 0.10 % / 0.10 % (sources in the rule file)
    assert (binance.maker_fee, binance.taker_fee) == (0.0002, 0.0005)
    assert (binance.spot_maker_fee, binance.spot_taker_fee) == (0.001, 0.001)
    assert market_fees(binance, {}, "fees") == {"perp": FeeRates(0.0002, 0.0005), "future": FeeRates(0.0002, 0.0005),
                                                "spot": FeeRates(0.001, 0.001)}


def test_spot_and_perp_fills_pay_their_own_rule_set_fees():
    fills = _fills(_config())
    assert len(fills) == 4
    for instrument, liquidity, rate in ((SPOT, "taker", 0.001), (PERP, "taker", 0.0005),
                                        (SPOT, "maker", 0.001), (PERP, "maker", 0.0002)):
        _, _, notional, fee = _by(fills, instrument, liquidity)
        assert fee == pytest.approx(notional * rate, rel=1e-12), (instrument, liquidity)
    # by hand: the first spot buy is 0.1 BTC at the 2024-10-03 01:00 open plus 1 bp slippage
    _, _, notional, fee = _by(fills, SPOT, "taker")
    assert 5_000 < notional < 7_000 and fee == pytest.approx(notional / 1000)


def test_config_overrides_fees_per_market():
    # a VIP tier with BNB discount on spot, and a perp maker rebate: plain numbers
    fees = {"perp": {"maker": -0.00005, "taker": 0.0004}, "spot": {"taker": 0.00075}}
    fills = _fills(_config(fees))
    expected = {(SPOT, "taker"): 0.00075, (SPOT, "maker"): 0.001,  # spot maker not overridden: the rule set's
                (PERP, "taker"): 0.0004, (PERP, "maker"): -0.00005}
    for (instrument, liquidity), rate in expected.items():
        _, _, notional, fee = _by(fills, instrument, liquidity)
        assert fee == pytest.approx(notional * rate, rel=1e-12), (instrument, liquidity)
    _, _, notional, fee = _by(fills, PERP, "maker")
    assert fee < 0  # a rebate credits the account


def test_future_defaults_to_the_perp_override():
    rules = load_rules("okx-swap")
    resolved = market_fees(rules, {"perp": {"taker": 0.0003}}, "exchanges.okx.fees")
    assert resolved["future"] == resolved["perp"] == FeeRates(0.0002, 0.0003)
    assert resolved["spot"] == FeeRates(0.0008, 0.001)  # OKX Lv1 spot


@pytest.mark.parametrize("fees,key", [
    ({"perps": {"taker": 0.0004}}, "exchanges.binance.fees: unknown markets ['perps']"),
    ({"spot": {"taker": 0.1}}, "exchanges.binance.fees.spot.taker = 0.1"),
    ({"perp": {"maker": "0.0002"}}, "exchanges.binance.fees.perp.maker = '0.0002'"),
    ({"perp": {"taker": True}}, "exchanges.binance.fees.perp.taker = True"),
    ({"perp": {"maker": -0.01}}, "exchanges.binance.fees.perp.maker = -0.01"),
    ({"spot": {"maker": 0.001, "rebate": 0.0}}, "exchanges.binance.fees.spot = "),
    ({"spot": 0.001}, "exchanges.binance.fees.spot = 0.001"),
    (0.001, "exchanges.binance.fees = 0.001"),
])
def test_bad_fee_config_names_the_key(fees, key):
    with pytest.raises(ConfigError) as exc:
        _config(fees)
    assert key in str(exc.value)


def test_rule_set_without_spot_fees_needs_them_in_the_config(tmp_path):
    import json

    data = json.loads((DATA_DIR / "binance-usdm.json").read_text())
    del data["fees"]["spot"]
    path = tmp_path / "no-spot.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"exchanges\.binance\.fees\.spot: rule set binance-usdm publishes no "
                                          r"spot fees.*binance:BTC/USDT"):
        Backtest(_config(rules=str(path)))
    with pytest.raises(ConfigError, match="give both maker and taker"):
        _config({"spot": {"taker": 0.001}}, rules=str(path))
    fills = _fills(_config({"spot": {"maker": 0.0009, "taker": 0.0011}}, rules=str(path)))
    _, _, notional, fee = _by(fills, SPOT, "taker")
    assert fee == pytest.approx(notional * 0.0011, rel=1e-12)
