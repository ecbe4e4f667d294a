"""One client's features written by hand in plain numpy: the yardstick for the engine's online path.

No plan, no catalog: each feature is a line of numpy over the client's own arrays (the arrays
``crm_arrays`` makes of a one-client data set). It computes the same features as the catalog
(the benchmark checks that it agrees with the engine), so its time is what a program written
for exactly these features, and nothing else, costs per client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, CRMArrays, TableArrays
from churnguard.features.catalog import event_slug

Row = dict[str, object]


def _is(table: TableArrays, column: str, *values: str) -> np.ndarray:
    labels = table.categories[column]
    return np.isin(table(column), [labels.index(v) for v in values if v in labels])


def client_features(data: CRMArrays, as_of: int, event_types: Sequence[str]) -> Row:
    """Every catalog feature of the data's one client at as_of (epoch seconds)."""
    today = as_of // DAY

    def known(t: np.ndarray) -> np.ndarray:
        return (t != NAT) & (t < as_of)

    def window(t: np.ndarray, days: int, offset: int = 0) -> np.ndarray:
        end = as_of - offset * DAY
        return (t != NAT) & (t >= end - days * DAY) & (t < end)

    def since(t: np.ndarray, m: np.ndarray) -> float:
        return float((as_of - t[m].max()) / DAY) if m.any() else np.nan

    def ratio(a: float, b: float) -> float:
        return a / b if b != 0 else np.nan

    def mean(v: np.ndarray, m: np.ndarray) -> float:
        return ratio(float(v[m].sum()), float(m.sum()))

    out: Row = {}
    # contact
    i = data.table("interactions")
    t = i("occurred_at")
    ok = known(t)
    meeting, call = _is(i, "channel", "meeting"), _is(i, "channel", "call")
    email, review = _is(i, "channel", "email"), _is(i, "channel", "review")
    inbound, outbound = _is(i, "direction", "inbound"), _is(i, "direction", "outbound")
    w30, w90, w365, w90b = window(t, 30), window(t, 90), window(t, 365), window(t, 90, 90)
    out["days_since_contact"] = since(t, ok)
    out["days_since_meeting"] = since(t, ok & meeting)
    out["days_since_call"] = since(t, ok & call)
    out["days_since_inbound"] = since(t, ok & inbound)
    out["days_since_outbound"] = since(t, ok & outbound)
    out["contacts_30d"] = float(w30.sum())
    out["contacts_90d"] = float(w90.sum())
    out["contacts_365d"] = float(w365.sum())
    out["contacts_change_90d"] = float(w90.sum()) - float(w90b.sum())
    out["meetings_90d"] = float((w90 & meeting).sum())
    out["calls_90d"] = float((w90 & call).sum())
    out["emails_90d"] = float((w90 & email).sum())
    out["reviews_365d"] = float((w365 & review).sum())
    out["inbound_90d"] = float((w90 & inbound).sum())
    out["outbound_90d"] = float((w90 & outbound).sum())
    out["inbound_share_90d"] = ratio(float((w90 & inbound).sum()), float(w90.sum()))
    out |= _feedback(data.table("feedback"), known, window, since, mean)
    out |= _billing(data.table("invoices"), as_of, today, known, window, since, ratio, mean)
    out |= _tickets(data.table("tickets"), known, window, since, mean)
    out |= _contracts(data, as_of, known, window)
    out |= _client(data.table("clients"), as_of)
    e = data.table("events")
    t, value = e("occurred_at"), np.nan_to_num(e("value"), nan=1.0)
    for event_type in event_types:
        kind = _is(e, "event_type", event_type)
        slug = event_slug(event_type)
        last_90 = float(value[window(t, 90) & kind].sum())
        out[f"{slug}_30d"] = float(value[window(t, 30) & kind].sum())
        out[f"{slug}_90d"] = last_90
        out[f"{slug}_change_90d"] = last_90 - float(value[window(t, 90, 90) & kind].sum())
        out[f"{slug}_days_since"] = since(t, known(t) & kind)
    return out


Known = Callable[[np.ndarray], np.ndarray]
Window = Callable[..., np.ndarray]
Since = Callable[[np.ndarray, np.ndarray], float]
Mean = Callable[[np.ndarray, np.ndarray], float]


def _feedback(f: TableArrays, known: Known, window: Window, since: Since, mean: Mean) -> Row:
    t, score = f("submitted_at"), f("score")
    nps, csat = _is(f, "survey", "nps"), _is(f, "survey", "csat")
    w365, w180, w180b = window(t, 365), window(t, 180), window(t, 180, 180)

    def last(m: np.ndarray) -> float:  # the latest response; among equal times, the last row
        m = m & known(t)
        return float(score[np.flatnonzero(m & (t == t[m].max()))[-1]]) if m.any() else np.nan

    return {
        "days_since_feedback": since(t, known(t)),
        "nps_last": last(nps),
        "nps_mean_365d": mean(score, w365 & nps),
        "nps_change_180d": mean(score, w180 & nps) - mean(score, w180b & nps),
        "csat_last": last(csat),
        "csat_mean_365d": mean(score, w365 & csat),
        "detractor_responses_365d": float((w365 & nps & (score <= 6)).sum()),
        "promoter_responses_365d": float((w365 & nps & (score >= 9)).sum()),
        "feedback_responses_365d": float(w365.sum()),
    }


def _billing(
    inv: TableArrays,
    as_of: int,
    today: int,
    known: Known,
    window: Window,
    since: Since,
    ratio: Callable[[float, float], float],
    mean: Mean,
) -> Row:
    issued, due, paid = inv("issued_at"), inv("due_at"), inv("paid_at")
    disputed, amount = inv("disputed_at"), inv("amount")
    resolved = np.where(disputed == NAT, NAT, inv("dispute_resolved_at"))
    settled = np.where(paid == NAT, NAT, np.maximum(paid, due))
    is_due, is_settled = known(due), known(settled)
    opened, closed = known(disputed), known(resolved)
    overdue = float(is_due.sum()) - float(is_settled.sum())
    due_days = (due // DAY).astype(float)
    paid_365 = window(paid, 365)
    days_late = np.maximum(paid - due, 0) / DAY
    invoiced_90 = float(amount[window(issued, 90)].sum())
    return {
        "invoiced_90d": invoiced_90,
        "invoiced_change_90d": invoiced_90 - float(amount[window(issued, 90, 90)].sum()),
        "open_disputes": float(opened.sum()) - float(closed.sum()),
        "open_disputed_amount": float(amount[opened].sum()) - float(amount[closed].sum()),
        "disputes_365d": float(window(disputed, 365).sum()),
        "days_since_dispute": since(disputed, opened),
        "disputed_share_365d": ratio(
            float(amount[window(disputed, 365)].sum()), float(amount[window(issued, 365)].sum())
        ),
        "overdue_invoices": overdue,
        "overdue_amount": float(amount[is_due].sum()) - float(amount[is_settled].sum()),
        "mean_days_overdue": (
            (overdue * today - (due_days[is_due].sum() - due_days[is_settled].sum())) / overdue
            if overdue > 0
            else np.nan
        ),
        "late_payment_share_365d": ratio(
            float((paid_365 & (paid > due)).sum()), float(paid_365.sum())
        ),
        "mean_days_late_365d": mean(days_late, paid_365),
    }


def _tickets(tk: TableArrays, known: Known, window: Window, since: Since, mean: Mean) -> Row:
    opened, resolved = tk("opened_at"), tk("resolved_at")
    high = _is(tk, "priority", "high", "urgent")
    o90 = window(opened, 90)
    return {
        "open_tickets": float(known(opened).sum()) - float(known(resolved).sum()),
        "open_high_priority_tickets": float((known(opened) & high).sum())
        - float((known(resolved) & high).sum()),
        "tickets_30d": float(window(opened, 30).sum()),
        "tickets_90d": float(o90.sum()),
        "high_priority_tickets_90d": float((o90 & high).sum()),
        "tickets_change_90d": float(o90.sum()) - float(window(opened, 90, 90).sum()),
        "mean_resolution_days_90d": mean(
            np.maximum(resolved - opened, 0) / DAY, window(resolved, 90)
        ),
        "days_since_ticket": since(opened, known(opened)),
    }


def _contracts(data: CRMArrays, as_of: int, known: Known, window: Window) -> Row:
    c = data.table("contracts")
    start, end, cancelled = c("start_date"), c("end_date"), c("cancelled_at")
    stop = np.where(
        end == NAT, cancelled, np.where(cancelled == NAT, end, np.minimum(end, cancelled))
    )
    value, auto = c("monthly_value"), c("auto_renew")
    began, ended = known(start), known(stop)
    active = float(began.sum()) - float(ended.sum())
    in_force = began & ((stop == NAT) | (stop >= as_of))
    fixed = in_force & (end != NAT)
    lines = c("service_line")[in_force]
    return {
        "active_contracts": active,
        "monthly_value": float(value[began].sum()) - float(value[ended].sum()),
        "value_change_90d": float(value[window(start, 90)].sum())
        - float(value[window(stop, 90)].sum()),
        "value_change_365d": float(value[window(start, 365)].sum())
        - float(value[window(stop, 365)].sum()),
        "auto_renew_share": (float(auto[began].sum()) - float(auto[ended].sum())) / active
        if active != 0
        else np.nan,
        "tenure_days": float((as_of - start[began].min()) / DAY) if began.any() else np.nan,
        "days_to_contract_end": float(((end[fixed] - as_of) / DAY).min())
        if fixed.any()
        else np.nan,
        "rolling_contracts": float((in_force & (end == NAT)).sum()),
        "service_lines": float(len(np.unique(lines))),
        "cancellations_365d": float(window(cancelled, 365).sum()),
    }


def _client(clients: TableArrays, as_of: int) -> Row:
    since = clients("client_since")[0]
    out: Row = {
        "client_age_days": float((as_of - since) / DAY)
        if since != NAT and since < as_of
        else np.nan,
        "has_account_manager": float(clients("has_account_manager")[0]),
    }
    for name in ("segment", "industry", "region"):
        code = clients(name)[0]
        out[name] = clients.categories[name][code] if code >= 0 else None
    return out
