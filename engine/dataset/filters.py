"""Trading filters (lot size, tick size, minimum notional) from venue metadata into `dataset.toml`.

Each instrument of the exchange is matched to a market of the metadata by its ccxt symbol, else by
its exchange symbol id. What the metadata gives replaces the declared value; what it does not give
stays as declared and is named in a warning (0 means "not enforced"), as is an instrument the
metadata does not list. The manifest is rewritten atomically.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from xmargin.dataset.manifest import MANIFEST_NAME, manifest_to_toml, read_manifest

FIELDS = ("lot_size", "tick_size", "min_notional")


@attrs.frozen
class FilterUpdate:
    """What changed in one dataset: (instrument key, field, old, new) rows and warnings naming instruments."""

    path: Path
    changes: tuple[tuple[str, str, float, float], ...]
    warnings: tuple[str, ...]

    def lines(self) -> list[str]:
        return ([f"{key}: {field} {old:g} -> {new:g}" for key, field, old, new in self.changes]
                + [f"warning: {w}" for w in self.warnings] + [f"wrote {self.path}"])


def _clean(value: float) -> float:
    """12 significant digits: 0.01 x 0.01 contracts is 0.0001, not 0.00010000000000000002."""
    return float(f"{value:.12g}")


def apply_market_filters(dataset: str | Path, metadata, exchange: str) -> FilterUpdate:
    """Set lot_size, tick_size, min_notional (and an inverse contract's size) of `exchange`'s
    instruments in `dataset`/dataset.toml from `metadata` (`xmargin.venues.metadata.VenueMetadata`)."""
    manifest = read_manifest(dataset)
    by_symbol = {m.symbol: m for m in metadata.markets.values()}
    instruments, changes, warnings = [], [], []
    for instrument in manifest.instruments:
        if instrument.exchange != exchange:
            instruments.append(instrument)
            continue
        market = by_symbol.get(instrument.symbol) or metadata.markets.get(instrument.native_id)
        if market is None or market.market != instrument.market:
            warnings.append(f"{instrument.key}: not in the metadata; {', '.join(FIELDS)} stay "
                            f"{instrument.lot_size:g}, {instrument.tick_size:g}, {instrument.min_notional:g} "
                            "(0 = not enforced)")
            instruments.append(instrument)
            continue
        updates = {}
        for field in FIELDS:
            value = getattr(market, field)
            if value is None:
                warnings.append(f"{instrument.key}: the metadata gives no {field}; it stays "
                                f"{getattr(instrument, field):g} (0 = not enforced)")
            elif _clean(value) != getattr(instrument, field):
                updates[field] = _clean(value)
        if instrument.is_inverse and market.contract_size and market.contract_size != instrument.contract_size:
            updates["contract_size"] = _clean(market.contract_size)
        changes.extend((instrument.key, f, float(getattr(instrument, f)), v) for f, v in updates.items())
        instruments.append(attrs.evolve(instrument, **updates))
    path = Path(dataset) / MANIFEST_NAME
    partial = path.with_name(MANIFEST_NAME + ".partial")
    partial.write_text(manifest_to_toml(attrs.evolve(manifest, instruments=tuple(instruments))))
    partial.replace(path)
    return FilterUpdate(path=path, changes=tuple(changes), warnings=tuple(warnings))
