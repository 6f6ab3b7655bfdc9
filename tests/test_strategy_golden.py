"""End-to-end golden runs of the built-in strategies: each example config through
`xmargin.sim.runner.execute` on the shipped sample, headline numbers pinned (rel 1e-9).

Why the pinned numbers are plausible (checked by hand against the event logs when pinned):

* basis carry (BTC, Binance, 2024-10..12, 50k per leg, 3x, buffer 0.5): Q4-2024 BTC funding
  averaged ~10 %/yr and the carry was in most of the quarter: ~50k x 10 % x 0.25 = 1.25k; got
  1,533 received. Fees: 18 taker fills, the perp's 180.4k notional at Binance USD-M's 5 bps and the
  spot's 180.4k at Binance spot's 10 bps = 270.6 (before issue 15 every fill paid the futures rate:
  180.4; the spot half adds 180,430.67 x 0.05 % = 90.22, checked against the fill events). No
  liquidation (the perp's margin is at most half the cash). Strategy PnL ~ funding - fees +
  basis/rebalancing slippage: +1.2k on 100k.
* funding arbitrage (BTC, Binance 8h vs Hyperliquid 1h, 40k per leg): Hyperliquid paid more than
  Binance most of the quarter, so the book is mostly short Hyperliquid / long Binance: funding
  received on Hyperliquid (+1,812), paid on Binance (-771). Price PnL nets out across the silos
  (+6.8k realised on Binance, -6.8k on Hyperliquid); three USDC top-ups from Binance's reserve
  (8,761.56 + 3 x 1 USDC withdrawal fee; each lands 30 min after it is sent) when the losing short leg ate Hyperliquid's buffer.
  Total PnL 400 = funding 1,041 - trading fees 617 - 3 withdrawal fees - basis slippage.
  (Re-pinned for issue 12: 41 Hyperliquid funding stamps in the sample are at HH:00:01 or HH:14:48 and
  used to be paid one bar late; they now settle at the bar containing the stamp. Before: 21 fills per
  exchange, fees 364 / 328, funding -779 / +1,820, total PnL 285.)
* pairs hedge (long ETH / short SOL, beta, 2025-02..04): ETH fell ~32 % and SOL ~25 % over the
  window; with a ~0.8 beta short SOL the long ETH loses more than the short earns: -7.4k on a 30k
  long leg is about the ETH/SOL relative move. 36 small rebalance fills, 70 in fees.
* core hedge + isolated spec (BTC carry + 25x long ETH isolated, 2025-01-15..03-15): ETH fell
  from ~3,220 to ~3,000 by 2025-01-27, > 4 % against a 25x long: one isolated liquidation, loss
  917 <= its 1,000 isolated margin; the cross hedge keeps running (rebalance fills afterwards).
  PnL -745 = funding 274 - fees 96 - liquidation 917 + carry basis. Fees: 80,750.77 perp notional at
  5 bps + 55,783.35 spot notional at Binance spot's 10 bps = 96.16 (68.27 when spot paid 5 bps).

`marked_pnl` is an independent mark-to-market of the final ledger (stables at par, spot at the last
close, perps' uPnL at the mark); every test checks that the summary's USD PnL equals it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xmargin.config import load_config
from xmargin.sim.runner import execute

ROOT = Path(__file__).resolve().parents[1]
STABLES = ("USDT", "USDC", "USD")


def run(name: str, tmp_path: Path):
    config = load_config(ROOT / "examples" / f"{name}.toml")
    return execute(config, out=tmp_path, run_id=name)


def marked_pnl(completed) -> float:
    """Final value of every account (stables at par, other assets at the spot's last close, open
    perps' unrealised PnL at the last mark) minus the deposits."""
    result = completed.result
    feed, catalog = result.feed, result.catalog
    row = len(feed.ts) - 1
    value = 0.0
    for exchange, account in result.ledger.accounts.items():
        for asset, balance in account.balances.items():
            if asset in STABLES:
                value += balance
            else:
                spot = next(t for t in catalog.on_exchange(exchange)
                            if t.instrument.market == "spot" and t.instrument.base == asset)
                value += balance * float(feed.close[row, spot.column])
        for position in account.positions.values():
            mark = float(feed.mark_close[row, catalog.tradable(position.instrument).column])
            value += position.isolated_margin + position.quantity * (mark - position.entry_price)
    return value - completed.summary["total"]["deposits"]


def headline(summary: dict) -> dict:
    keys = ("fills", "fees", "funding", "liquidations", "liquidation_loss", "rejected_orders")
    return {exchange: {k: row[k] for k in keys} for exchange, row in summary["exchanges"].items()}


def test_basis_carry_golden(tmp_path):
    completed = run("basis_carry", tmp_path)
    assert headline(completed.summary) == {"binance": {
        "fills": 18, "fees": pytest.approx(270.62010255849106, rel=1e-9),
        "funding": pytest.approx(1532.9111372817422, rel=1e-9), "liquidations": 0, "liquidation_loss": 0.0,
        "rejected_orders": 0}}
    assert completed.summary["exchanges"]["binance"]["realized_pnl"] == pytest.approx(-6120.690819539996, rel=1e-9)
    assert marked_pnl(completed) == pytest.approx(MARKED["basis_carry"], rel=1e-9)
    assert completed.summary["total"]["pnl"] == pytest.approx(MARKED["basis_carry"], rel=1e-9)
    assert completed.result.ledger.accounts["binance"].balances["BTC"] == pytest.approx(0.518)


def test_funding_arbitrage_golden(tmp_path):
    completed = run("funding_arbitrage", tmp_path)
    summary = completed.summary
    assert headline(summary) == {
        "binance": {"fills": 19, "fees": pytest.approx(324.54169012231495, rel=1e-9),
                    "funding": pytest.approx(-770.8864472012879, rel=1e-9), "liquidations": 0,
                    "liquidation_loss": 0.0, "rejected_orders": 0},
        "hyperliquid": {"fills": 19, "fees": pytest.approx(292.20167132946005, rel=1e-9),
                        "funding": pytest.approx(1812.2421360754129, rel=1e-9), "liquidations": 0,
                        "liquidation_loss": 0.0, "rejected_orders": 0}}
    assert summary["exchanges"]["binance"]["pnl"] == pytest.approx(5719.217155826362, rel=1e-9)
    assert summary["exchanges"]["hyperliquid"]["pnl"] == pytest.approx(-5318.881172254081, rel=1e-9)
    assert summary["total"]["pnl"] == pytest.approx(400.3359835722804, rel=1e-9)  # after 3 x 1 USDC fees
    # the independent mark-to-market agrees, withdrawal fees included
    assert marked_pnl(completed) == pytest.approx(400.3359835722804, rel=1e-9)
    transfers = [e for e in completed.result.events if type(e).__name__ == "TransferSent"]
    assert [(e.exchange, e.destination, e.asset) for e in transfers] == [("binance", "hyperliquid", "USDC")] * 3
    assert sum(e.amount for e in transfers) == pytest.approx(8761.56, rel=1e-9)


def test_pairs_hedge_golden(tmp_path):
    completed = run("pairs_hedge", tmp_path)
    summary = completed.summary
    assert headline(summary) == {"binance": {
        "fills": 36, "fees": pytest.approx(69.66520657753551, rel=1e-9),
        "funding": pytest.approx(-237.94931620783544, rel=1e-9), "liquidations": 0, "liquidation_loss": 0.0,
        "rejected_orders": 0}}
    assert summary["total"]["pnl"] == pytest.approx(-7446.082136797964, rel=1e-9)
    assert marked_pnl(completed) == pytest.approx(summary["total"]["pnl"], rel=1e-9)
    first = next(e for e in completed.result.events if type(e).__name__ == "OrderFilled")
    assert first.ts >= 1_739_059_200_000_000_000  # not before 2025-02-09: a week of SOL bars


def test_core_hedge_isolated_golden(tmp_path):
    completed = run("core_hedge_isolated", tmp_path)
    summary = completed.summary
    assert headline(summary) == {"binance": {
        "fills": 9, "fees": pytest.approx(96.1587302233365, rel=1e-9),
        "funding": pytest.approx(274.36622793459605, rel=1e-9), "liquidations": 1,
        "liquidation_loss": pytest.approx(-917.3978750557332, rel=1e-9), "rejected_orders": 0}}
    assert marked_pnl(completed) == pytest.approx(MARKED["core_hedge_isolated"], rel=1e-9)
    assert completed.summary["total"]["pnl"] == pytest.approx(MARKED["core_hedge_isolated"], rel=1e-9)
    (liquidation,) = [e for e in completed.result.events if type(e).__name__ == "PositionLiquidated"]
    assert liquidation.instrument == "binance:ETH/USDT:USDT" and liquidation.isolated
    assert -liquidation.realized_pnl + liquidation.fee <= 1000.01  # at most its isolated margin (25k / 25)
    positions = completed.result.ledger.accounts["binance"].positions
    assert list(positions) == ["binance:BTC/USDT:USDT"]  # the hedge survived


MARKED = {"basis_carry": 1230.8079535878496, "core_hedge_isolated": -745.1972173174727}
