"""Contact with the client (interactions) and usage (events: hours, logins, deliverables)."""

from __future__ import annotations

import numpy as np

from churnguard.synth.sampling import pick, uniform_time
from churnguard.synth.state import NEGLECT_FACTOR, Risk
from churnguard.synth.timeline import DAY, MONTH_S, NAT, Array, Chunk

OUT_RATE = (3.2, 2.2, 1.3)  # outbound contacts a month from an attentive manager, by segment
IN_RATE = (1.3, 0.9, 0.6)
UNASSIGNED_OUT_RATE = 0.25
HOURLY_RATE = 140.0
LOGIN_RATE, DELIVERABLE_RATE = (3.0, 2.0, 1.2), (1.2, 0.6, 0.3)
OUT_CHANNELS = (
    (0.40, 0.22, 0.22, 0.10, 0.06),
    (0.45, 0.25, 0.17, 0.07, 0.06),
    (0.55, 0.27, 0.10, 0.03, 0.05),
)
IN_CHANNELS = (0.62, 0.33, 0.0, 0.0, 0.05)


def contact_rates(r: Risk) -> tuple[Array, Array]:
    """Outbound and inbound contacts a month."""
    outbound = r.out_rate * np.where(r.neglected, NEGLECT_FACTOR, 1.0)
    return outbound, r.in_rate * np.exp(0.35 * r.s)


def draw_last_contact(rate: Array, a: Array, b: Array, rng: np.random.Generator) -> Array:
    """Time of the last contact of a Poisson stream in [a, b) seconds (NAT if none)."""
    back = rng.standard_exponential(len(rate)) * MONTH_S / rate
    return np.where(back < b - a, np.floor(b - back).astype(np.int64), NAT)


def office_hours(seconds: Array) -> Array:
    """Each time squeezed into 08:00-18:00 of its day (keeps the order and the day; NAT stays)."""
    day = seconds // DAY * DAY
    return np.where(seconds == NAT, NAT, day + 8 * 3600 + (seconds - day) * 10 // 24)


def contact_chunk(
    client: Array, when: Array, outbound: Array, seg: Array, rng: np.random.Generator
) -> Chunk:
    """Interaction rows; the channel mix depends on direction and segment."""
    probs = np.where(outbound[:, None], np.asarray(OUT_CHANNELS)[seg[client]], IN_CHANNELS)
    channel = pick(rng, probs) if len(client) else np.zeros(0, dtype=np.int64)
    return {"client": client, "at": when, "channel": channel, "direction": outbound.astype(int)}


def write_contacts(
    r: Risk,
    present: Array,
    a: Array,
    b: Array,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> Array:
    """Write the month's interactions; return each client's last contact time (NAT if none)."""
    outbound, inbound = contact_rates(r)
    rate = outbound + inbound
    last = np.where(present, draw_last_contact(rate, a, b, rng), NAT)
    has = np.flatnonzero(last != NAT)
    earlier = rng.poisson(rate[has] * (last[has] - a[has]) / MONTH_S)
    client = np.concatenate([has, np.repeat(has, earlier)])
    start = np.concatenate([last[has], np.repeat(a[has], earlier)])
    stop = np.concatenate([last[has] + 1, np.repeat(last[has], earlier)])
    when = office_hours(uniform_time(rng, start, stop))
    out = rng.random(len(client)) < (outbound / rate)[client]
    log["interactions"].append(contact_chunk(client, when, out, r.seg, rng))
    return office_hours(last)


def event_chunk(
    r: Risk, present: Array, a: Array, b: Array, line_val: Array, rng: np.random.Generator
) -> Chunk:
    """Usage events: monthly billable hours, portal logins and deliverables."""
    idx = np.flatnonzero(present & (b > a))
    span = (b[idx] - a[idx]) / MONTH_S
    noise = np.exp(0.2 * r.s[idx] + 0.12 * rng.standard_normal(len(idx)))
    hours = np.round(line_val[idx].sum(axis=1) / HOURLY_RATE * noise * span * 4) / 4
    hours_at = (b[idx] - 1) // DAY * DAY
    logins = rng.poisson(np.asarray(LOGIN_RATE)[r.seg[idx]] * np.exp(0.5 * r.s[idx]) * span)
    delivered = rng.poisson(
        np.asarray(DELIVERABLE_RATE)[r.seg[idx]] * np.exp(0.2 * r.s[idx]) * span
    )
    repeat = np.concatenate([np.repeat(idx, logins), np.repeat(idx, delivered)])
    when = uniform_time(rng, a[repeat], b[repeat])
    minutes = np.round(np.exp(2.7 + 0.6 * rng.standard_normal(logins.sum())))
    return {
        "client": np.concatenate([idx, repeat]),
        "at": np.concatenate([hours_at, when]),
        "type": np.concatenate(
            [np.zeros(len(idx)), np.ones(logins.sum()), np.full(delivered.sum(), 2)]
        ).astype(int),
        "value": np.concatenate([hours, minutes, np.ones(delivered.sum())]),
    }
