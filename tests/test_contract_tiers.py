"""OKX swap position tiers counted in contracts (rule data `{"unit": "contracts", ...}`): the tier is
chosen by the position's size in contracts, which does not move with price, and OKX holds the tier's
MMR (plus the taker fee) on the whole position.

Source of the tiers: OKX announcement 'OKX to adjust position tiers of perpetual swaps', 2023-05-15,
effective 2023-05-19 (mirror https://www.okx.vote/pl/help/okx-to-adjust-position-tiers-of-perpetual-swaps-2023-05-15,
recorded in shared/exchange-rules/venue-facts-2026-11.md): ADAUSDT tier 1 up to 1,500 contracts at MMR
0.50 % / 75x, tier 2 up to 3,000 at 0.75 % / 50x, tier 3 up to 6,000 at 1.00 % / 40x. OKX's isolated
margin ratio = (margin + UPL) / (|Q| x mark x (tier MMR + fee)) (open-lib.com/11556.html, summary of
OKX's help page). ADA-USDT-SWAP contract value 100 ADA (the rule file's `not_public` says it is unchecked).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmargin.errors import RulesError
from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder
from xmargin.margin import formulas as margin
from xmargin.venues.rules import load_rules
from xmargin.venues.rules.ruleset import DATA_DIR
from helpers_feed import VenueSpec, make_catalog, make_feed, of_type, perp, run

TAKER = 0.0005  # okx-swap fees.taker, held in maintenance (maintenance.fee_to_close = "taker")


def maintenance(contracts: float, price: float) -> float:
    """The engine's maintenance margin of an ADAUSDT long of `contracts` at `price` (USDT)."""
    table = load_rules("okx-swap").brackets_for("ADAUSDT").for_quantity(contracts * 100.0)
    return margin.maintenance_margin(contracts * 100.0 * price, table)


def test_maintenance_margin_across_the_first_okx_tier_boundary():
    # hand-derived: 1,500 contracts x 100 ADA x 0.40 = 60,000 USDT at tier 1 (0.50 %) + taker 0.05 %
    assert maintenance(1_500, 0.40) == pytest.approx(60_000.0 * (0.005 + TAKER))  # 330.00
    assert maintenance(1_500, 0.40) == pytest.approx(330.0)
    # one contract more is tier 2 (0.75 %) on the whole position: 150,100 x 0.40 = 60,040 USDT -> 480.32
    assert maintenance(1_501, 0.40) == pytest.approx(60_040.0 * (0.0075 + TAKER))
    assert maintenance(1_501, 0.40) == pytest.approx(480.32)
    # tier 3 starts above 3,000 contracts: 3,001 x 100 x 0.40 = 120,040 x (1.00 % + 0.05 %) = 1,260.42
    assert maintenance(3_000, 0.40) == pytest.approx(120_000.0 * (0.0075 + TAKER))
    assert maintenance(3_001, 0.40) == pytest.approx(1_260.42)


def test_the_tier_does_not_move_with_price():
    """1,500 contracts stay in tier 1 when ADA doubles (notional 120,000 USDT); a notional bracket
    table converted at 0.40 (what `rules import` without --contracts writes) would put that notional
    in tier 3."""
    assert maintenance(1_500, 0.80) == pytest.approx(120_000.0 * (0.005 + TAKER))
    tiers = load_rules("okx-swap").brackets_for("ADAUSDT")
    assert tiers.for_quantity(150_000.0) is tiers.for_quantity(150_000.0)  # one table per tier, cached
    assert tiers.for_quantity(150_000.0).brackets[0].max_leverage == 75.0
    assert tiers.for_quantity(150_100.0).brackets[0].max_leverage == 50.0


@pytest.mark.parametrize("contracts, rate", [(1_500, 0.005), (1_510, 0.0075)])
def test_isolated_long_is_liquidated_at_its_tier_in_a_run(contracts, rate):
    """OKX's ratio = 1 for an isolated long: LP = (EP - M/Q) / (1 - MMR - fee), MMR of the position's tier."""
    instrument = perp("okx", "ADA", lot_size=1.0)
    catalog = make_catalog({"okx": VenueSpec(load_rules("okx-swap"), margin_mode="isolated",
                                             collateral={"USDT": 100_000.0})}, [instrument])
    feed = make_feed([instrument.key], list(np.linspace(0.40, 0.30, 41)))
    result, _ = run(catalog, feed, {0: [PlaceOrder.market(instrument.key, contracts * 100.0, leverage=20)]})
    (fill,) = of_type(result.events, ev.OrderFilled)
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    q = fill.quantity
    expected = (fill.price - fill.margin_delta / q) / (1 - rate - TAKER)
    assert liquidated.trigger_price == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("contracts, accepted", [(1_500, True), (1_501, False)])
def test_leverage_cap_is_the_tier_of_the_size_in_contracts(contracts, accepted):
    """Tier 1 (up to 1,500 contracts) allows 75x, tier 2 only 50x: 60x is taken for 1,500 contracts,
    refused for 1,501 (the rule set's default table allows 50x at any size)."""
    instrument = perp("okx", "ADA", lot_size=1.0)
    catalog = make_catalog({"okx": VenueSpec(load_rules("okx-swap"), margin_mode="isolated",
                                             collateral={"USDT": 100_000.0})}, [instrument])
    feed = make_feed([instrument.key], [0.40] * 3)
    result, _ = run(catalog, feed, {0: [PlaceOrder.market(instrument.key, contracts * 100.0, leverage=60)]})
    rejected = of_type(result.events, ev.OrderRejected)
    if accepted:
        assert rejected == [] and len(of_type(result.events, ev.OrderFilled)) == 1
    else:
        assert len(rejected) == 1 and "exceeds the maximum 50" in rejected[0].reason


def test_a_malformed_contract_table_is_named(tmp_path):
    data = json.loads((DATA_DIR / "okx-swap.json").read_text())
    data["brackets"]["ADAUSDT"]["tiers"][1]["max_contracts"] = 1_000  # below tier 1's 1,500
    path = tmp_path / "okx.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RulesError) as exc:
        load_rules(str(path))
    assert str(path) in str(exc.value) and "brackets.ADAUSDT.tiers[1]" in str(exc.value)
    del data["brackets"]["ADAUSDT"]["contract_value"]
    path.write_text(json.dumps(data))
    with pytest.raises(RulesError, match="contract_value"):
        load_rules(str(path))
