"""The event loop: per timestamp prices, funding, fills, margin, strategies.

Per-event Python work happens only where something is due: a funding settlement, a transfer
arriving, a resting order that may fill, a strategy wake-up, or a margin event found by the
vectorised scan (`xmargin.margin.risk`). Between those rows the loop advances over whole slices of the
feed arrays. Every change of state is a domain event applied through `xmargin.ledger.apply.apply` and
appended to the log; no wall-clock time enters the run (progress printing only reads it).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from bisect import bisect_left, bisect_right
from contextlib import contextmanager

import attrs
import numpy as np

from xmargin._arrays import sorted_unique
from xmargin._memory import return_free_memory
from xmargin._progress import ProgressLine
from xmargin._memos import clear_memos
from xmargin.errors import ConfigError
from xmargin.ledger import events as ev
from xmargin.margin.auto_exchange import conversion_events
from xmargin.ledger.decide import decide
from xmargin.sim.execution import fill_events, fill_price, funding_events
from xmargin.sim.expiry import expiry_events, settlement_schedule
from xmargin.dataset.feed import Feed, iso_minutes, load_feed
from xmargin.dataset.tables import as_utc
from xmargin.ledger.apply import applier_of
from xmargin.margin.liquidation import cancelled_orders, liquidation_events
from xmargin.margin.modes import account_units, venue_mode
from xmargin.margin.units import leverage_for
from xmargin.margin.risk import MOMENTS, POINTS, VALUED_AT, PlannedExtremes, account_prices_at, breaches_at, scan
from xmargin.venues.fees import market_fees
from xmargin.venues.rules import load_rules
from xmargin.output.snapshots import Snapshot
from xmargin.ledger.state import Ledger
from xmargin.sim.strategy import View, Wake, Wakes, build_strategy
from xmargin.config import check_instruments, check_margin_mode, check_sample_interval
from xmargin.errors import StrategyError, XmarginError, mark_strategy_failure
from xmargin.ledger import commands as cmd
from xmargin.venues.venue import Catalog, Tradable, Venue


def build_catalog(config, manifest) -> Catalog:
    """Venues from the config's exchanges; tradables: the dataset's instruments on those exchanges
    (restricted to `run.instruments` when given), in dataset order."""
    venues = {}
    for name, exchange in config.exchanges.items():
        rules = load_rules(exchange.rules)
        check_margin_mode(f"exchanges.{name}", exchange.margin_mode, rules)  # (a config built in code)
        venues[name] = Venue(exchange=name, rules=rules, margin_mode=exchange.margin_mode,
                             collateral=dict(exchange.collateral), leverage=exchange.leverage,
                             withdrawal_fees=dict(exchange.withdrawal_fees),
                             transfer_delay_minutes=dict(exchange.transfer_delay_minutes),
                             fees=dict(exchange.fees or market_fees(rules, {}, f"exchanges.{name}.fees")))
    wanted = set(config.instruments) if config.instruments else None
    check_instruments(wanted or (), manifest.keys, config.dataset)
    tradables = {}
    for instrument in manifest.instruments:
        if instrument.exchange not in venues or (wanted is not None and instrument.key not in wanted):
            continue
        venue = venues[instrument.exchange]
        fees = venue.fees.get(instrument.market)
        if fees is None:
            raise ConfigError(f"exchanges.{venue.exchange}.fees.{instrument.market}: rule set {venue.rules.name} "
                              f"publishes no {instrument.market} fees and the config gives none, but the run trades "
                              f"{instrument.key}. Set e.g. exchanges.{venue.exchange}.fees.{instrument.market} = "
                              "{ maker = 0.001, taker = 0.001 } with the exchange's rates.")
        tradables[instrument.key] = Tradable(instrument=instrument, column=len(tradables),
                                             brackets=venue.rules.brackets_for(instrument.native_id),
                                             maker_fee=fees.maker, taker_fee=fees.taker)
    return Catalog.create(venues, tradables)


def unbracketed(config, catalog: Catalog) -> dict:
    """Perps whose rule set lists no brackets for their symbol (and whose exchange did not opt in to
    the rule set's defaults): key -> the error an order on them raises."""
    out = {}
    for key, tradable in catalog.tradables.items():
        instrument = tradable.instrument
        exchange = config.exchanges[instrument.exchange]
        rules = catalog.venues[instrument.exchange].rules
        if (instrument.is_derivative and not rules.has_symbol(instrument.native_id)
                and not exchange.allow_default_brackets):
            default = rules.default_brackets.brackets[0]
            out[key] = (f"exchanges.{instrument.exchange}.rules: rule set {rules.name!r} has no brackets for "
                        f"{instrument.native_id} ({key}), which the strategy trades. Add its brackets to a rule file "
                        "(see engine/venues/rules/data/*.json) and point rules at it, or set "
                        f"exchanges.{instrument.exchange}.allow_default_brackets = true to use the rule set's default "
                        f"brackets (max leverage {default.max_leverage:g}x, maintenance margin rate "
                        f"{default.maintenance_margin_rate:.2%} in the first tier).")
    return out


def run_warnings(catalog: Catalog, feed: Feed) -> list[tuple]:
    """What a run's summary must say about its inputs, as (instrument key or None, message, check):
    an exchange with nothing to trade, an instrument whose bars cover only part of the run, a perp
    margined on the last price. Messages about one instrument apply when the run trades it."""
    warnings = [(None, f"exchanges.{name}: no instrument of the dataset is on this exchange (check the name "
                       "against the dataset's exchanges); its collateral just sits there", "no instrument")
                for name in catalog.venues if not catalog.on_exchange(name)]
    for name, venue in catalog.venues.items():
        traded = {t.instrument.native_id for t in catalog.on_exchange(name)}
        warnings.extend((None, f"exchanges.{name}.rules: {message}", "rules") for symbol, message in venue.rules.warnings
                        if symbol is None or symbol in traded)
        settles = {t.instrument.settle for t in catalog.on_exchange(name) if t.instrument.is_derivative}
        if settles and venue_mode(catalog, name).pools_are_assets and not settles & set(venue.collateral):
            warnings.append((None, f"exchanges.{name}.collateral holds {sorted(venue.collateral)} but its perps "
                                   f"settle in {sorted(settles)}: without multi-asset margin that collateral backs "
                                   "none of them", "collateral"))
    for key, tradable in catalog.tradables.items():
        leverage, highest = catalog.venues[tradable.instrument.exchange].leverage, _highest_leverage(tradable.brackets)
        if tradable.instrument.is_derivative and leverage > highest:
            warnings.append((key, f"exchanges.{tradable.instrument.exchange}.leverage = {leverage:g} is above {key}'s "
                                  f"highest max leverage ({highest:g}x in its rule set): its orders that give no "
                                  f"leverage of their own use at most {highest:g}x", "leverage"))
    warnings.extend(feed.warnings)
    total = len(feed.ts)
    for column, key in enumerate(feed.keys):
        rows = np.flatnonzero(feed.has_bar[:, column])
        if len(rows) and (rows[0] > 0.05 * total or rows[-1] < 0.95 * (total - 1)):
            first, last = (_iso(int(feed.ts[r])) for r in (rows[0], rows[-1]))
            warnings.append((key, f"{key}: bars only from {first} to {last}, {100 * len(rows) / total:.0f} % of the "
                                  "run; outside that it cannot trade and a hedge on it is one-legged", "coverage"))
        tradable = catalog.tradables.get(key)
        if tradable is not None and tradable.instrument.is_derivative and feed.mark_source.get(key) == "last":
            warnings.append((key, f"{key}: no mark series in the dataset; margin, PnL and liquidations use the "
                                  "last price", "no mark"))
    return warnings


def _highest_leverage(table) -> float:
    """The highest max leverage of a bracket table (by notional) or of tiers counted in contracts."""
    return float(max(table.max_leverages)) if table.unit == "notional" else max(t.max_leverage for t in table.tiers)


def window_warnings(config, feed: Feed) -> list[tuple]:
    """run.start / run.end beyond the dataset's bars: the run is shorter than the config says."""
    out = []
    first, end = int(feed.ts[0]), int(feed.ts[-1]) + feed.bar_ns
    if config.start is not None and _ns(config.start) < first:
        out.append((None, f"run.start = {iso_minutes(_ns(config.start))} is before the dataset's first bar "
                          f"({iso_minutes(first)}): the run starts there"))
    if config.end is not None and _ns(config.end) > end:
        out.append((None, f"run.end = {iso_minutes(_ns(config.end))} is after the dataset's last bar closes "
                          f"({iso_minutes(end)}): the run ends there"))
    return out


def _ns(moment) -> int:
    """A config datetime in ns since the epoch (`as_utc`: naive is UTC, as the dataset's times)."""
    moment = as_utc(moment)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


@attrs.define
class RunContext:
    """What `decide` and execution read besides the ledger: the catalog, the feed, the current row."""

    catalog: Catalog
    feed: Feed
    row: int = 0
    withdrawal_halts: tuple = ()

    def transfer_blocked(self, source: str, destination: str, ts: int) -> str:
        for exchange, start, end in self.withdrawal_halts:
            if exchange in (source, destination) and start <= ts < end:
                return f"transfer: {exchange} has halted withdrawals and deposits until {end}"
        return ""


@attrs.define
class RunResult:
    """A finished run in memory. `snapshots` say which account state to value at which feed row;
    `xmargin.output.writer` projects them into the equity, positions and collateral tables."""

    config: object
    feed: Feed
    catalog: Catalog
    events: list  # the log; with `event_file`, the events not in that file yet
    snapshots: list
    initial_ledger: Ledger
    ledger: Ledger
    timings: dict
    intrabar: str
    projected: tuple | None = None  # (equity, positions, collateral) frames, computed once (output.snapshots)
    distances: object = None  # the distance table, computed once (analysis.distance.run_distances)
    units: object = None  # the snapshots' stacked risk units: xmargin.output.snapshots.run_stacked
    warnings: list = attrs.field(factory=list)
    settlements: tuple = ()  # xmargin.sim.expiry.Settlement of every dated future in the run
    event_file: object = None  # xmargin.output.eventlog.EventFile holding the log's first events (unfinished)
    events_written: int = 0  # how many: `events` follow them
    valuation_file: object = None  # xmargin.output.writer.ValuationFile holding the snapshots valued so far (unfinished)

    @property
    def event_count(self) -> int:
        """Events in the run's log (before any release)."""
        return self.events_written + len(self.events)

    def release(self, *parts: str) -> None:
        """Drop what the tables were made from once they are written (`xmargin.output.writer`, for
        a command-line run): "events" (the log, once `events.arrow` is written), "extremes" (the
        feed's open, high and low arrays, trade and mark: what reads closes only once the snapshots
        are valued; snapshots at a bar's open or inside it are valued at them), "valuation" (the
        snapshots, their cached valuation and the feed, whose price arrays are most
        of a run's memory); all three without `parts`. Afterwards `events` / `snapshots` are empty,
        `feed` is None (after "extremes": a feed of closes only, `Feed.closes_only`). The valuation
        path's memos are cleared too (recomputed if needed: same numbers)."""
        clear_memos()  # the run's cached units, rows and pools pin its accounts (xmargin._memos)
        for part in parts or ("events", "extremes", "valuation"):
            if part == "events":
                self.events = []
            elif part == "extremes":
                if self.feed is not None:
                    self.feed = self.feed.closes_only()
            elif part == "valuation":
                self.snapshots = []
                self.units = self.projected = self.distances = None
                self.feed = None
            else:
                raise ValueError(f"RunResult.release: unknown part {part!r} (events, extremes, valuation)")
        return_free_memory(collect=self.feed is None)  # once the snapshots are gone, few objects are left to scan


RELEASE_ROWS = 65_536  # rows between two releases of a paged feed's passed rows (45 days of 1-minute bars)
GC_YOUNG_THRESHOLD = 20_000  # net new container objects between young collections while a run is in progress


def _freeze_survivors(phase: str, info: dict) -> None:
    """After a collection during a run, what survived it (the log, snapshots, accounts) leaves the
    collector's view: it is never scanned again (gc.freeze; undone when the run ends)."""
    if phase == "stop":
        gc.freeze()


_POLICY_LOCK = threading.Lock()
_policy_users = 0  # runs (or output phases) inside few_collections now, in any thread
_saved_thresholds: tuple = ()


@contextmanager
def few_collections():
    """Fewer cyclic-GC passes while a run builds its long-lived log. What exists on entry (the loaded
    feed, modules) is frozen out of collection, a young collection runs every 20,000 new container
    objects (not every 700) and whatever survives it is frozen too, so each long-lived object is
    scanned at most once. The log and snapshots are acyclic and freed by reference counting; the
    collector found nothing in them and took about 9 % of W2's run phase, 18-25 % of a 4-year run's,
    scanning them again and again in older generations. Cyclic garbage a strategy drops is still
    collected at the next young collection (a strategy dropping a cyclic object with a 64 kB array
    every hour grows W2's peak by 51 MB; at 1,000,000 containers between collections it was 540 MB).
    Nested or overlapping uses (threads) share one policy: the last to leave restores the collector;
    then everything frozen goes to the oldest generation (scanned only by a later full collection,
    as long-lived objects are)."""
    global _policy_users, _saved_thresholds
    with _POLICY_LOCK:
        if _policy_users == 0:
            _saved_thresholds = gc.get_threshold()
            gc.set_threshold(max(_saved_thresholds[0], GC_YOUNG_THRESHOLD), *_saved_thresholds[1:])
            gc.callbacks.append(_freeze_survivors)
        _policy_users += 1
        gc.freeze()
    try:
        yield
    finally:
        with _POLICY_LOCK:
            _policy_users -= 1
            gc.freeze()  # the run's survivors join the oldest generation, not a young one about to be scanned
            if _policy_users == 0:  # the collector first: nothing below may leave it changed
                gc.set_threshold(*_saved_thresholds)
                gc.unfreeze()
                if _freeze_survivors in gc.callbacks:
                    gc.callbacks.remove(_freeze_survivors)


class Backtest:
    """One run: build it from a validated `RunConfig`, call `run()`."""

    def __init__(self, config, feed: Feed | None = None, catalog: Catalog | None = None, strategy=None,
                 shocks=(), progress: bool = False, input_warnings=(), event_file=None, scratch=None,
                 valuation_file=None):
        """`input_warnings`: the dataset validation's warnings (Problems); the summary repeats those
        about instruments the run trades, with the run's own. `event_file`: an
        `xmargin.output.eventlog.EventFile` that takes the log a full record batch at a time while
        the run goes on (memory then holds at most one batch of events); the writer finishes it, and
        whoever made it closes it if the run fails (`xmargin.sim.runner.execute`). `scratch`: a folder
        on disk (the output folder) where a long book's price arrays are kept in a file-backed mapping
        whose passed rows the loop gives back (`xmargin.dataset.paging`). `valuation_file`: an
        `xmargin.output.writer.ValuationFile` that values the snapshots and writes the valuation
        tables a chunk at a time while the run goes on (the run then keeps none of its snapshots)."""
        from xmargin.dataset.manifest import read_manifest

        started = time.perf_counter()
        self.config = config
        self.catalog = catalog or build_catalog(config, read_manifest(config.dataset))
        self._unbracketed = {} if catalog is not None else unbracketed(config, self.catalog)
        self.feed = feed or load_feed(config.dataset, list(self.catalog.tradables), config.start, config.end,
                                      config.timeframe, scratch=scratch)
        check_sample_interval(config.sample_interval_ns, self.feed.bar_ns)
        start_ns = int(self.feed.ts[0])  # the rule tables and portfolio variants in force at the first bar
        self.catalog = self.catalog.with_rules_in_force(
            {name: e.rules_variant for name, e in config.exchanges.items()}, start_ns).with_portfolio_variants(
            {name: e.portfolio_margin for name, e in config.exchanges.items()}, start_ns)
        self.load_seconds = time.perf_counter() - started
        given = [(p.instrument or None, f"dataset: {p}") for p in input_warnings]
        said = {(p.instrument, p.check) for p in input_warnings}
        self.warnings = given + [(key, message) for key, message, check in run_warnings(self.catalog, self.feed)
                                 if (key, check) not in said] + window_warnings(config, self.feed)
        self.strategy = strategy or build_strategy(config.strategy, config.params, getattr(config, "folder", None))
        self.strategy_name = getattr(config, "strategy", "") or type(self.strategy).__name__
        self.wakes: Wakes = self._call_strategy("wakes()", self.strategy.wakes)
        if not isinstance(self.wakes, Wakes):
            raise StrategyError(f"strategy {self.strategy_name}: wakes() returned {self.wakes!r} "
                                f"({type(self.wakes).__name__}), not a Wakes(...); see docs/strategies.md.")
        for key in self.wakes.bars:
            if key != "*":
                self._call_strategy("wakes()", lambda key=key: self.feed.column(key))
        self.context = RunContext(self.catalog, self.feed)
        self.shocks = tuple(shocks)
        for shock in self.shocks:
            shock.prepare(self)
        self.progress = progress
        self.ledger = Ledger.create({name: venue.margin_mode for name, venue in self.catalog.venues.items()})
        self.events: list = []
        self._event_file = event_file
        self._spill_at = event_file.batch if event_file is not None else math.inf  # log length that spills a batch
        self._spilled_instruments: set = set()  # the instruments of the events already in the event file
        self._spill_seconds = 0.0  # spent writing the event file during the run (not the run phase's)
        self.snapshots: list = []
        self._valuation_file = valuation_file
        self.thresholds = np.array(config.warning_thresholds, dtype=np.float64)
        self._points = POINTS[config.intrabar]
        self._moments = MOMENTS[config.intrabar]  # the moment of the bar each path point is (snapshots' valued_at)
        self._exchanges = sorted(self.catalog.venues)
        modes = [venue_mode(self.catalog, name) for name in self.catalog.venues]
        self._revalue_units = any(mode.revalue_each_stretch for mode in modes)  # units move with collateral prices
        self._steady_units = {name for name, mode in zip(self.catalog.venues, modes)  # units ignore prices
                              if not mode.revalue_each_stretch}
        self._auto_exchange = any(mode.auto_exchange for mode in modes)
        self._units_ledger = None
        self._extremes = None  # PlannedExtremes of the run (set when it starts)
        self._units: list = []
        self._sample_rows: list = []
        self._last_partial: dict = {}  # (exchange, unit name) -> ts of its last partial liquidation step
        self._lowered: dict = {}  # instrument -> [orders, first ts, account leverage, lowest used]: `_note_lowered`
        self.settlements = settlement_schedule(self.catalog, self.feed, getattr(config, "dataset", None))

    def _note_lowered(self, event) -> None:
        """Count an order accepted at a leverage below the account's for its instrument: its bracket
        at the new notional allows less, and `decide` lowered it (the venues refuse such an order:
        docs/rules.md, "The largest position"); the run's warnings say so (`_lowered_warnings`)."""
        configured = leverage_for(self.ledger.accounts[event.exchange], self.catalog, event.instrument)
        if event.leverage < configured:
            seen = self._lowered.setdefault(event.instrument, [0, event.ts, configured, event.leverage])
            seen[0] += 1
            seen[3] = min(seen[3], event.leverage)

    def _lowered_warnings(self) -> list[str]:
        """A warning per instrument whose orders `decide` margined below the account's leverage."""
        return [f"exchanges.{key.split(':', 1)[0]}.leverage: {orders:,} order(s) on {key} took the position past "
                f"what its bracket allows at the account's {configured:g}x (first at {_iso(first)}) and were "
                f"margined at the bracket's maximum (down to {lowest:g}x); Binance (-2027), OKX and Hyperliquid "
                "refuse such an order at the account's leverage (docs/rules.md, 'The largest position'). Fix: a "
                f"lower leverage for {key} (exchanges.{key.split(':', 1)[0]}.leverage or SetLeverage) or smaller "
                "orders" for key, (orders, first, configured, lowest) in sorted(self._lowered.items())]

    def _warnings_that_apply(self) -> list[str]:
        """The input warnings about instruments this run traded or watched (and all general ones)."""
        used = ({getattr(event, "instrument", None) for event in self.events} | self._spilled_instruments
                | set(self.wakes.bars))
        if "*" in used:
            used |= set(self.feed.keys)
        return [message for key, message in self.warnings if key is None or key in used]

    def _call_strategy(self, where, call):
        """`call()`; what it raises becomes a StrategyError naming the strategy, the moment and the
        error, with the user's exception (and traceback) chained. `where` is a string or a function
        returning one (formatted only on failure: the hot path builds no message)."""
        try:
            return call()
        except Exception as exc:
            named = self._named(exc, where)
            try:
                if named is exc:
                    raise
                raise named from exc
            finally:  # the exception's traceback holds this frame: a bound `named` would be a cycle keeping
                named = None  # the whole run (its feed's file, its open outputs) until a full collection

    def _named(self, exc: Exception, where) -> Exception:
        """What `_call_strategy` raises for `exc`: an XmarginError (e.g. an unknown instrument key read
        through the View) becomes a StrategyError naming the strategy and the moment; the user's own
        exception goes on, with its traceback, named in a note."""
        where = where() if callable(where) else where
        if isinstance(exc, XmarginError):
            return StrategyError(f"strategy {self.strategy_name}: {where} raised {type(exc).__name__}: {exc}")
        exc.add_note(mark_strategy_failure(exc, f"strategy {self.strategy_name}: {where} raised "
                                                f"{type(exc).__name__}: {exc}"))
        return exc

    # -- event plumbing -------------------------------------------------------------------------
    def emit(self, events) -> None:
        ledger, log, applier = self.ledger, self.events, applier_of
        for event in events:
            ledger = applier(type(event))(ledger, event)  # = apply(ledger, event), without a call in between
            log.append(event)
        self.ledger = ledger
        if len(log) >= self._spill_at:
            self._spill()

    def _spill(self) -> None:
        """Hand every full record batch of the log to the event file and drop it from memory."""
        started = time.perf_counter()
        log, size = self.events, self._spill_at
        while len(log) >= size:
            batch = log[:size]
            self._spilled_instruments.update(getattr(event, "instrument", None) for event in batch)
            self._event_file.add(batch)
            del log[:size]
        self._spill_seconds += time.perf_counter() - started

    def _event_count(self) -> int:
        """Events emitted so far (those in the event file and those in memory)."""
        return len(self.events) + (self._event_file.written if self._event_file is not None else 0)

    def _snapshot(self, row: int, ts: int, reason: str, exchanges, valued_at: str) -> None:
        """Record the accounts to value at moment `valued_at` of bar `row` ("open", "close" or an
        intrabar path point: `xmargin.margin.risk.VALUED_AT`; valued at the end, xmargin.output.snapshots,
        or a chunk at a time while the run goes on, with a `valuation_file`),
        with their risk units where they do not move with prices: the run values every account
        state it snapshots (the scan that follows), so they are built once, here or there (memo)."""
        applied = self._event_count()
        accounts, catalog, steady = self.ledger.accounts, self.catalog, self._steady_units
        taken = [Snapshot(ts, reason, applied, row, accounts[exchange],
                          account_units(catalog, accounts[exchange]) if exchange in steady else None, valued_at)
                 for exchange in exchanges]
        if self._valuation_file is None:
            self.snapshots.extend(taken)
        else:  # valued and written a chunk at a time (its time is not the run phase's)
            self._valuation_file.add(taken)

    # -- schedule -------------------------------------------------------------------------------
    def _wake_rows(self) -> np.ndarray:
        feed, wakes = self.feed, self.wakes
        rows = [np.array([0])]
        self._timer_rows: set = set()
        self._bar_rows: set = set()
        if wakes.every:
            from xmargin.config import parse_duration

            every = parse_duration(wakes.every, "wakes.every")
            rows.append(np.flatnonzero((feed.ts + feed.bar_ns) % every == 0))
            self._timer_rows = set(rows[-1].tolist())
        if wakes.bars:
            columns = list(range(len(feed.keys))) if "*" in wakes.bars else [feed.column(k) for k in wakes.bars]
            rows.append(np.flatnonzero(feed.has_bar[:, columns].any(axis=1)))
            self._bar_rows = set(rows[-1].tolist())
        if wakes.funding:
            rows.append(feed.funding_row)
        return sorted_unique(np.concatenate(rows))

    def _funding_by_row(self) -> dict:
        by_row: dict[int, list] = {}
        feed = self.feed
        for row, column, rate in zip(feed.funding_row.tolist(), feed.funding_column.tolist(),
                                     feed.funding_rate.tolist()):
            by_row.setdefault(row, []).append((column, rate))
        return by_row

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        with few_collections():
            return self._run()

    def _run(self) -> RunResult:
        started = time.perf_counter()
        feed, config = self.feed, self.config
        total = len(feed.ts)
        first_ts = int(feed.ts[0])
        self.initial_ledger = self.ledger  # before the deposits: replaying the whole log from here is exact
        if self._valuation_file is not None:
            self._valuation_file.start(self.catalog, feed, config.warning_thresholds)
        for name, venue in self.catalog.venues.items():
            self.emit(ev.CollateralDeposited(first_ts, name, asset, amount) for asset, amount in venue.collateral.items())
        self._snapshot(0, first_ts, "start", self._exchanges, "open")  # the deposits at the first bar's open
        # sorted Python lists: the loop looks things up with bisect (no numpy call per row)
        wake_rows = self._wake_rows().tolist()
        funding = self._funding_by_row()
        expiring: dict[int, list] = {}
        for settlement in self.settlements:
            if settlement.row is not None:
                expiring.setdefault(settlement.row, []).append(settlement)
        # rows where state changes without a strategy: funding settlements and contract expiries
        funding_rows = sorted(set(funding) | set(expiring))
        # the stretches the loop scans end at these rows (a wake's next row, funding, expiry)
        self._extremes = PlannedExtremes(feed, [0, *(w + 1 for w in wake_rows), *funding_rows])
        sample_rows = np.flatnonzero((feed.ts + feed.bar_ns) % config.sample_interval_ns == 0)
        self._sample_rows = sorted_unique(np.append(sample_rows, total - 1)).tolist()
        slippage = config.slippage_bps / 10_000.0
        progress = ProgressLine(self.progress)
        row = 0
        release_at = RELEASE_ROWS if feed.paged is not None else total + 1
        feed.release()  # (what planning the run read of a paged feed)
        while row < total and not self.ledger.stopped:
            self.context.row = row
            ts = int(feed.ts[row])
            changed = set()
            reasons = []
            wake_events = []
            # 1-2. prices are the arrays at `row`; transfers arriving; funding due at this bar
            arrivals = [t for t in self.ledger.in_flight.values() if t.arrives_ts <= ts]
            if arrivals:
                self.emit(ev.TransferArrived(ts, t.destination, t.transfer_id, t.source, t.asset, t.amount)
                          for t in sorted(arrivals, key=lambda t: t.transfer_id))
                changed.update(t.destination for t in arrivals)
            if row in funding:
                settled = funding_events(self.ledger, self.context, row, funding[row])
                self.emit(settled)
                changed.update(e.exchange for e in settled)
                if settled and self.wakes.funding:
                    reasons.append("funding")
            # 2b. dated futures expiring at this bar settle before anything fills
            for settlement in expiring.get(row, ()):
                settled = expiry_events(self.ledger, self.catalog, settlement)
                self.emit(settled)
                changed.update(e.exchange for e in settled)
            # 3. fills of resting orders (an account beyond maintenance at the open is liquidated there first)
            filled, liquidated = self._fill_orders(row, ts, slippage)
            if filled:
                changed.update(e.exchange for e in filled)
                if self.wakes.fills and any(isinstance(e, ev.OrderFilled) for e in filled):
                    reasons.append("fill")
                    wake_events.extend(e for e in filled if isinstance(e, ev.OrderFilled))
            if liquidated and self.wakes.margin_warnings:
                reasons.append("margin_warning")
                wake_events.extend(liquidated)
            changed.update(self._convert_negative_balances(row, ts, changed, "open"))
            if changed:
                self._snapshot(row, ts, "event", sorted(changed), "open")
            if self.ledger.stopped:  # (a liquidation at the open, run.on_liquidation = stop)
                break
            # the quiet stretch: until the next wake or the next row where state changes
            wake_at = wake_rows[bisect_left(wake_rows, row)] if wake_rows[-1] >= row else total
            next_funding = funding_rows[bisect_right(funding_rows, row)] \
                if funding_rows and funding_rows[-1] > row else total
            stop = min(int(wake_at) + 1, int(next_funding), total)
            if reasons:
                stop = row + 1
            if any(a.orders for a in self.ledger.accounts.values()):
                stop = min(stop, row + 1)
            # 4. margin over [row, stop), transfers landing inside it at their own time
            stop, margin_events = self._watch_margin(row, stop)
            if margin_events and self.wakes.margin_warnings:
                reasons.append("margin_warning")
                wake_events.extend(margin_events)
            last_row = stop - 1
            # 5. strategies, at the close of the last bar of the stretch
            if self.ledger.stopped:
                break
            if last_row == wake_at:
                reasons[:0] = ["start"] if last_row == 0 else [
                    name for name, rows in (("timer", self._timer_rows), ("bar", self._bar_rows)) if last_row in rows]
            if reasons:
                self._wake(last_row, tuple(dict.fromkeys(reasons)), tuple(wake_events))
            row = stop
            if row >= release_at:  # a paged feed: the rows passed leave memory (a look back reads them again)
                feed.release(row)
                release_at = row + RELEASE_ROWS
            if self.progress and progress.due():
                progress.say(f"{np.datetime64(int(feed.ts[min(row, total - 1)]), 'ns').astype('datetime64[m]')}  "
                             f"{100 * row / total:5.1f} %  {self._event_count():,} events")
        progress.done()
        feed.release()
        final_row = min(row, total) - 1
        self._snapshot(final_row, int(feed.ts[final_row]) + feed.bar_ns, "final", sorted(self.catalog.venues),
                       "close")
        valued = self._valuation_file.seconds if self._valuation_file is not None else 0.0
        run_seconds = time.perf_counter() - started - self._spill_seconds - valued
        timings = {"load_seconds": self.load_seconds, "run_seconds": run_seconds}
        if self._event_file is not None:
            timings["event_log_seconds"] = self._spill_seconds  # the log written during the run
        return RunResult(config=config, feed=feed, catalog=self.catalog, events=self.events,
                         snapshots=self.snapshots,
                         initial_ledger=self.initial_ledger, ledger=self.ledger,
                         timings=timings,
                         intrabar=config.intrabar, warnings=self._warnings_that_apply() + self._lowered_warnings(),
                         settlements=tuple(self.settlements), event_file=self._event_file,
                         valuation_file=self._valuation_file,
                         events_written=self._event_file.written if self._event_file is not None else 0)

    def _fill_orders(self, row: int, ts: int, slippage: float) -> tuple[list, list]:
        """Fills of the resting orders at bar `row` (open `ts`), exchange by exchange, in order id
        order. Before an account's first fill there, `_liquidate_at_open` looks at it at the open's
        marks. Returns (fill events, margin events of liquidations at the open)."""
        feed = self.feed
        out, liquidated = [], []
        if not any(account.orders for account in self.ledger.accounts.values()):
            return out, liquidated
        for exchange in sorted(self.ledger.accounts):
            looked = False
            for order_id in sorted(self.ledger.accounts[exchange].orders):
                order = self.ledger.accounts[exchange].orders.get(order_id)
                if order is None or order.accepted_ts >= ts + feed.bar_ns:
                    continue
                column = self.catalog.tradable(order.instrument).column
                if not feed.has_bar[row, column]:
                    continue
                priced = fill_price(order, float(feed.open[row, column]), float(feed.high[row, column]),
                                    float(feed.low[row, column]), slippage)
                if priced is None:
                    continue
                if not looked:
                    looked = True
                    margin_events = self._liquidate_at_open(exchange, row, ts)
                    if margin_events:
                        liquidated.extend(margin_events)
                        if self.ledger.stopped:
                            return out, liquidated
                        order = self.ledger.accounts[exchange].orders.get(order_id)  # (cancelled: gone)
                        if order is None:
                            continue
                events = fill_events(self.ledger, self.context, order, priced[0], priced[1], ts)
                self.emit(events)
                out.extend(events)
        return out, liquidated

    def _risk_units(self, start: int, first_point: int) -> list:
        """The risk units of the current ledger; reused while the ledger object is unchanged (it is
        immutable) unless a margin mode values collateral at the stretch's prices (multi-asset,
        portfolio: then built at the prices of the stretch's first path point, `first_point` of bar
        `start`: the open, or the point after a breach, never a later price of that bar)."""
        if self._units_ledger is not self.ledger or self._revalue_units:
            feed, catalog, accounts, steady = self.feed, self.catalog, self.ledger.accounts, self._steady_units
            if self._revalue_units:
                moment = VALUED_AT.index(self._moments[first_point])
                now = int(feed.ts[start]) + first_point * feed.bar_ns // self._points
            units = []
            for exchange in sorted(accounts):
                account = accounts[exchange]
                units.extend(account_units(catalog, account) if exchange in steady else  # (prices unused)
                             account_units(catalog, account, account_prices_at(feed, catalog, account, start, moment),
                                           now))
            self._units = units
            self._units_ledger = self.ledger
        return self._units

    def _watch_margin(self, row: int, stop: int) -> tuple[int, list]:
        """Scan [row, stop) for margin events, handling each as it comes; returns the (possibly
        shortened) stop and the margin events raised."""
        feed, points = self.feed, self._points
        raised = []
        start, first_point = row, 0
        while True:
            units = self._risk_units(start, first_point)
            arrival = self._arrival_point()
            if arrival is not None and not start * points + first_point <= arrival[0] < stop * points:
                arrival = None
            scan_stop = stop if arrival is None else arrival[0] // points + 1
            breaches = scan(units, feed, start, scan_stop, first_point, self.config.intrabar, self.thresholds,
                            self._extremes)
            # a breach at the arrival's own path point crossed maintenance on the way to it: it comes first
            if arrival is not None and (not breaches or breaches[0].row * points + breaches[0].point > arrival[0]):
                at, point = divmod(arrival[0], points)
                self._samples(start, at)
                transfer = arrival[1]
                self.emit([ev.TransferArrived(transfer.arrives_ts, transfer.destination, transfer.transfer_id,
                                              transfer.source, transfer.asset, transfer.amount)])
                self._snapshot(at, transfer.arrives_ts, "event", [transfer.destination], self._moments[point])
                start, first_point = at, point
                continue
            until = breaches[0].row if breaches else stop
            self._samples(start, until)
            if not breaches:
                return stop, raised
            at = breaches[0].row
            ts = int(feed.ts[at]) + breaches[0].point * feed.bar_ns // points
            raised.extend(self._margin_events(breaches, at, ts))
            if self.ledger.stopped:
                return at + 1, raised
            if self.wakes.margin_warnings:
                stop = at + 1
            start, first_point = at, breaches[0].point
            if start * points + first_point >= stop * points:
                return stop, raised

    def _margin_events(self, breaches, at: int, ts: int,
                       reason: str = "liquidation: open orders are cancelled first", valued_at: str = "") -> list:
        """Handle breaches found at row `at`, time `ts`: the open orders of each account with a unit
        to liquidate cancelled first, once for all its units (`cancelled_orders`, `reason`), then the
        liquidations and warning-level changes, auto-exchange and a snapshot (valued at `valued_at`;
        "": the moment of the breaches' path point); a liquidation stops the run with
        `run.on_liquidation = stop`. Returns the margin events (emitted)."""
        liquidating: dict = {}
        for breach in breaches:
            if breach.liquidation:
                liquidating.setdefault(breach.unit.exchange, []).append(breach.unit)
        events = [event for exchange, units in liquidating.items()
                  for event in cancelled_orders(self.ledger.accounts[exchange], units, ts, reason)]
        for breach in breaches:
            if breach.liquidation:
                unit_key = (breach.unit.exchange, breach.unit.name)
                closed = liquidation_events(self.ledger, self.catalog, breach, ts, self._last_partial.get(unit_key))
                if any(getattr(e, "policy", "") == "partial" for e in closed):
                    self._last_partial[unit_key] = ts  # a partial order starts the policy's cooldown
                events.extend(closed)
            if breach.level != breach.unit.level:
                instrument = breach.unit.name
                threshold = float(self.thresholds[breach.level - 1]) if breach.level else 0.0
                events.append(ev.MarginWarningRaised(ts, breach.unit.exchange, instrument, breach.level,
                                                     threshold, breach.margin_ratio))
        self.emit(events)
        touched = {b.unit.exchange for b in breaches}
        moment = valued_at or self._moments[breaches[0].point]
        self._convert_negative_balances(at, ts, touched, moment)
        self._snapshot(at, ts, "event", sorted(touched), moment)
        if any(b.liquidation for b in breaches) and self.config.on_liquidation == "stop":
            self.emit([ev.RunStopped(ts, breaches[0].unit.exchange, "liquidation (run.on_liquidation = stop)")])
        return events

    def _liquidate_at_open(self, exchange: str, row: int, ts: int) -> list:
        """Liquidations of `exchange`'s account at bar `row`'s open, before its resting orders fill
        there. A fill sees the account at the open's marks; a unit at or beyond maintenance there (a
        gap through its liquidation price) is in liquidation at that moment, as the venues trigger it
        on the mark price: it closes as the margin watch closes a breach (its open orders cancelled
        first), at the open marks; a loss beyond the bankruptcy prices is the insurance fund's.
        Called only for an account with an order filling at this bar (nothing to do on bars without
        fills); an account not in breach at the open is untouched. Returns the margin events (emitted)."""
        account = self.ledger.accounts[exchange]
        marks = self.feed.mark_open[row]
        found = breaches_at(account_units(self.catalog, account, marks, ts), marks, row, self.thresholds)
        if not found:
            return []
        where = "; ".join(f"{b.unit.name} margin ratio {b.margin_ratio:.4g}" if math.isfinite(b.margin_ratio)
                          else f"{b.unit.name} equity at or below zero" for b in found)
        return self._margin_events(found, row, ts,
                                   f"liquidation at the open {_iso(ts)} ({where}): open orders are cancelled first",
                                   "open")

    def _arrival_point(self):
        """(flat path index, transfer) of the next transfer to land: the first path point of the bar
        holding its due time whose nominal time (bar open + point/points of the bar) is not earlier.
        The money counts from that point on; the event carries the exact due time."""
        if not self.ledger.in_flight:
            return None
        transfer = min(self.ledger.in_flight.values(), key=lambda t: (t.arrives_ts, t.transfer_id))
        feed, points = self.feed, self._points
        row = max(int(np.searchsorted(feed.ts, transfer.arrives_ts, side="right")) - 1, 0)
        step = feed.bar_ns // points
        point = -(-(transfer.arrives_ts - int(feed.ts[row])) // step)
        return min(row * points + max(point, 0), (row + 1) * points), transfer

    def _convert_negative_balances(self, row: int, ts: int, exchanges, moment: str) -> set:
        """Auto-exchange after events that moved balances (xmargin.margin.auto_exchange), at the
        prices of their moment `moment` of bar `row` (a name of `xmargin.margin.risk.VALUED_AT`:
        "open" after the open's events, a path point after a breach inside the bar)."""
        converted = set()
        if not self._auto_exchange:
            return converted
        code = VALUED_AT.index(moment)
        for exchange in sorted(exchanges):
            account = self.ledger.accounts[exchange]
            events = conversion_events(account, self.catalog,
                                       account_prices_at(self.feed, self.catalog, account, row, code), ts)
            if events:
                self.emit(events)
                converted.add(exchange)
        return converted

    def _samples(self, start: int, stop: int) -> None:
        sample_rows = self._sample_rows
        lo = bisect_left(sample_rows, start)
        hi = bisect_left(sample_rows, stop, lo)
        if hi <= lo:
            return
        exchanges = self._exchanges
        for row in sample_rows[lo:hi]:
            self._snapshot(row, int(self.feed.ts[row]) + self.feed.bar_ns, "sample", exchanges, "close")

    def _wake(self, row: int, reasons: tuple, wake_events: tuple) -> None:
        self.context.row = row
        ts = int(self.feed.ts[row]) + self.feed.bar_ns
        view = View(self.ledger, self.catalog, self.feed, row)
        def where() -> str:  # formatted only when a message needs it (not on every wake)
            return f"on_wake at {_iso(ts)} (reasons {', '.join(reasons)})"

        commands = self._call_strategy(where, lambda: list(self.strategy.on_wake(view, Wake(reasons, wake_events))
                                                            or ()))
        for command in commands:
            if type(command) not in _COMMANDS:
                raise StrategyError(f"strategy {self.strategy_name}: {where()} returned {command!r} "
                                    f"({type(command).__name__}), not a command; return commands from "
                                    "xmargin.ledger.commands (PlaceOrder, CancelOrder, ...) or nothing.")
            if isinstance(command, cmd.PlaceOrder) and command.instrument in self._unbracketed:
                raise ConfigError(self._unbracketed[command.instrument])
        changed = set()
        for command in commands:
            try:
                events = decide(self.ledger, self.context, command, ts)
            except Exception as exc:  # as `_call_strategy` does, without a closure per command
                named = self._named(exc, lambda: f"{where()}, command {command!r}")
                try:
                    if named is exc:
                        raise
                    raise named from exc
                finally:
                    named = None  # (no cycle: as in `_call_strategy`)
            self.emit(events)
            for event in events:
                if type(event) is not ev.OrderAccepted:  # an accepted order changes no balance or position
                    changed.add(event.exchange)
                elif type(command) is cmd.PlaceOrder and command.leverage is None and event.margin_mode != "spot":
                    self._note_lowered(event)  # (the account's leverage, lowered to the bracket's?)
        if changed:
            self._snapshot(row, ts, "event", sorted(changed), "close")


_COMMANDS = (cmd.PlaceOrder, cmd.CancelOrder, cmd.SetLeverage, cmd.SetMarginMode, cmd.AdjustIsolatedMargin,
             cmd.Transfer)


def run_backtest(config, progress: bool = False, **kwargs) -> RunResult:
    return Backtest(config, progress=progress, **kwargs).run()
