"""Transfers between exchange silos: the only way collateral moves from one exchange to another.

The source pays amount + withdrawal fee at once; the destination is credited after the delay.
While in flight the money backs nothing. Defaults below are documented assumptions (typical
on-chain withdrawal fees and confirmation times, late 2024), overridable per exchange and asset in
the config (`withdrawal_fees`, `transfer_delay_minutes`).
"""

from __future__ import annotations

from xmargin.ledger import events as ev
from xmargin.margin.accounting import asset_price, pool_for

DEFAULT_WITHDRAWAL_FEES = {"USDT": 1.0, "USDC": 1.0, "BTC": 0.0002, "ETH": 0.002, "SOL": 0.01}
DEFAULT_DELAY_MINUTES = 30.0


def withdrawal_fee(venue, asset: str) -> float:
    return venue.withdrawal_fees.get(asset, DEFAULT_WITHDRAWAL_FEES.get(asset, 0.0))


def delay_ns(venue, asset: str) -> int:
    return int(venue.transfer_delay_minutes.get(asset, DEFAULT_DELAY_MINUTES) * 60 * 1_000_000_000)


def decide_transfer(ledger, context, c, ts: int) -> list:
    transfer_id = ledger.next_transfer_id

    def reject(reason):
        return [ev.TransferRejected(ts, c.source, transfer_id, c.destination, c.asset, c.amount, reason)]

    venues = context.catalog.venues
    if c.source not in venues or c.destination not in venues:
        return reject(f"transfer: exchanges must be among {sorted(venues)}")
    if c.source == c.destination:
        return reject("transfer: source and destination are the same exchange")
    if not c.amount > 0:
        return reject(f"transfer: amount {c.amount} must be > 0")
    blocked = context.transfer_blocked(c.source, c.destination, ts)
    if blocked:
        return reject(blocked)
    venue = venues[c.source]
    fee = withdrawal_fee(venue, c.asset)
    account = ledger.accounts[c.source]
    marks = context.feed.mark_close[context.row]
    pool = pool_for(account, context.catalog, marks, context.feed.close[context.row], c.asset)
    price = asset_price(context.catalog, c.source, c.asset, marks)
    free_value = pool.free_collateral if pool is not None else 0.0
    free = min(free_value / price if price > 0 else 0.0, account.balance(c.asset))
    if c.amount + fee > free + 1e-9:
        return reject(f"transfer: {c.amount + fee:.6g} {c.asset} (amount + withdrawal fee) exceeds the free "
                      f"collateral {free:.6g} on {c.source}")
    return [ev.TransferSent(ts, c.source, transfer_id, c.destination, c.asset, c.amount, fee,
                            ts + delay_ns(venue, c.asset))]
