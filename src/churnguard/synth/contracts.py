"""Contracts: renewals, price increases, upsell and contraction, cancellations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churnguard.synth.clients import Population, line_value
from churnguard.synth.state import MAX_LINES, Risk
from churnguard.synth.timeline import FAR_DAY, NAT, Array, Calendar, Chunk, term_end
from churnguard.synth.vocabulary import SERVICE_LINES, SERVICE_WEIGHT

UPSELL_RATE, UPSELL_SLOPE, CONTRACTION_RATE, CONTRACTION_SLOPE = 0.004, 0.6, 0.005, -0.6
RENEWAL_UPSELL, RENEWAL_CONTRACTION, PRICE_INCREASE_SHARE, RENEWAL_GAP_SHARE = 0.08, 0.10, 0.3, 0.2


@dataclass
class Book:
    """Service lines each client holds now and the contract rows written so far (mutable)."""

    line_svc: Array
    line_val: Array
    line_row: Array  # contract row of each line, -1 = not written (starts after the data ends)
    next_row: int


@dataclass(frozen=True)
class Renewal:
    """What happens at a renewal for clients who stay."""

    price: Array  # factor on every line's value
    delta: Array  # +1 add a line, -1 drop a line, 0 none
    cut: Array  # factor on the value when a single-line client contracts
    start: Array  # day the new term starts
    end: Array  # day the new term ends


def draw_line_change(r: Risk, eligible: Array, m1: int, rng: np.random.Generator) -> Array:
    """Mid-term change: +1 a service line added, -1 one cancelled (others stay), 0 none."""
    room = (r.n_lines < MAX_LINES) & (r.end_day - m1 > 60)  # no add-on just before a renewal
    up = UPSELL_RATE * np.exp(UPSELL_SLOPE * r.s) * room
    down = CONTRACTION_RATE * np.exp(CONTRACTION_SLOPE * r.s) * (r.n_lines > 1)
    u = rng.random(len(r.s))
    return np.where(eligible, np.where(u < up, 1, np.where(u < up + down, -1, 0)), 0)


def draw_renewal(r: Risk, renew: Array, m1: int, rng: np.random.Generator) -> Renewal:
    """Price, scope and timing of each renewal (the decision to stay is made before)."""
    n, idx = len(r.s), np.flatnonzero(renew)
    u = rng.random((len(idx), 5))
    s, lines, end = r.s[idx], r.n_lines[idx], r.end_day[idx]
    up = RENEWAL_UPSELL * np.exp(0.4 * s) * (lines < MAX_LINES)
    down = RENEWAL_CONTRACTION * np.exp(-0.5 * s)
    change = np.where(u[:, 2] < up, 1, np.where(u[:, 2] < up + down, -1, 0))
    room = np.maximum(m1 - 1 - end, 0)  # a late renewal still starts within the month
    late = np.minimum(1 + (20 * u[:, 4]).astype(np.int64), room)
    start = end + np.where(u[:, 3] < RENEWAL_GAP_SHARE, late, 0)  # back to back or a few days
    price, delta, cut = np.ones(n), np.zeros(n, dtype=np.int64), np.ones(n)
    price[idx] = np.where(u[:, 0] < PRICE_INCREASE_SHARE, 1.03 + 0.09 * u[:, 1], 1.0)
    delta[idx] = np.where((change > 0) | (lines > 1), change, 0)
    cut[idx] = np.where((change < 0) & (lines == 1), 0.75 + 0.15 * u[:, 1], 1.0)
    starts, ends = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    starts[idx], ends[idx] = start, term_end(start, r.term[idx])
    return Renewal(price, delta, cut, starts, ends)


def open_rows(
    book: Book,
    log: dict[str, list[Chunk]],
    client: Array,
    start: Array,
    end: Array,
    auto: Array,
    cal: Calendar,
) -> None:
    """Write a contract row for every line of the given clients, starting on `start`."""
    c, slot = np.nonzero(book.line_svc[client] >= 0)
    c_start = start[c]
    written = c_start < cal.end  # a renewal starting after the data ends is not known yet
    rows = np.full(len(c), -1)
    rows[written] = book.next_row + np.arange(written.sum())
    book.next_row += int(written.sum())
    book.line_row[client[c], slot] = rows
    w = written
    log["contracts"].append(
        {
            "row": rows[w],
            "client": client[c][w],
            "svc": book.line_svc[client[c], slot][w],
            "start": c_start[w],
            "end": np.where(end[c] >= FAR_DAY, NAT, end[c])[w],
            "value": book.line_val[client[c], slot][w],
            "auto": auto[c][w],
        }
    )


def cancel_lines(
    book: Book, log: dict[str, list[Chunk]], who: Array, slots: Array, day: Array
) -> None:
    """Cancel the chosen lines of the chosen clients on `day` and free their slots."""
    c, slot = np.nonzero(slots & who[:, None])
    rows = book.line_row[c, slot]
    log["cancels"].append({"row": rows[rows >= 0], "day": day[c][rows >= 0]})
    book.line_svc[c, slot] = -1
    book.line_val[c, slot] = 0.0
    book.line_row[c, slot] = -1


def _random_slot(rng: np.random.Generator, usable: Array) -> Array:
    """A random usable slot per row, as a one-hot mask."""
    keys = np.where(usable, rng.random(usable.shape), np.inf)
    hot = np.zeros(usable.shape, dtype=bool)
    rows = np.flatnonzero(usable.any(axis=1))
    hot[rows, np.argmin(keys[rows], axis=1)] = True
    return hot


def _add_line(book: Book, who: Array, seg: Array, rng: np.random.Generator) -> Array:
    """Add a service line the client does not hold yet; return the one-hot mask of new slots."""
    n = len(who)
    held = np.zeros((n, len(SERVICE_LINES)), dtype=bool)
    rows, slots = np.nonzero(book.line_svc >= 0)
    held[rows, book.line_svc[rows, slots]] = True
    keys = np.where(held, np.inf, -np.log(rng.random(held.shape)) / np.asarray(SERVICE_WEIGHT))
    svc = np.argmin(keys, axis=1)
    slot = _random_slot(rng, (book.line_svc < 0) & who[:, None])
    c, s = np.nonzero(slot)
    book.line_svc[c, s] = svc[c]
    book.line_val[c, s] = line_value(seg[c], rng, (len(c),)) * 0.6
    return slot


def apply_renewals(
    book: Book,
    log: dict[str, list[Chunk]],
    who: Array,
    ren: Renewal,
    pop: Population,
    cal: Calendar,
    rng: np.random.Generator,
) -> None:
    """Renew every line of the clients who stay: drop or add a line, reprice, write new rows."""
    drop = _random_slot(rng, (book.line_svc >= 0) & (who & (ren.delta < 0))[:, None])
    c, s = np.nonzero(drop)
    book.line_svc[c, s], book.line_val[c, s], book.line_row[c, s] = -1, 0.0, -1
    _add_line(book, who & (ren.delta > 0), pop.seg, rng)
    factor = (ren.price * ren.cut)[:, None]
    book.line_val[:] = np.where(
        who[:, None], np.round(book.line_val * factor / 10) * 10, book.line_val
    )
    idx = np.flatnonzero(who)
    open_rows(book, log, idx, ren.start[idx], ren.end[idx], pop.auto[idx], cal)


def apply_line_changes(
    book: Book,
    log: dict[str, list[Chunk]],
    change: Array,
    end_day: Array,
    pop: Population,
    m0: int,
    m1: int,
    cal: Calendar,
    rng: np.random.Generator,
) -> None:
    """Mid-term upsell (a new co-terminous line) and contraction (one line cancelled)."""
    day = m0 + 7 + (rng.random(len(change)) * (m1 - m0 - 8)).astype(np.int64)  # after invoicing
    dropped = _random_slot(rng, (book.line_svc >= 0) & (change < 0)[:, None])
    cancel_lines(book, log, change < 0, dropped, day)
    added = _add_line(book, change > 0, pop.seg, rng)
    c, s = np.nonzero(added)
    row = book.next_row + np.arange(len(c))
    book.next_row += len(c)
    book.line_row[c, s] = row
    log["contracts"].append(
        {
            "row": row,
            "client": c,
            "svc": book.line_svc[c, s],
            "start": day[c],
            "end": np.where(end_day[c] >= FAR_DAY, NAT, end_day[c]),
            "value": book.line_val[c, s],
            "auto": pop.auto[c],
        }
    )
