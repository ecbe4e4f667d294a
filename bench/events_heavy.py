"""An event-heavy CRM export in another vendor's shape, written once to a folder (issue 13).

Usage: python -m bench.events_heavy --events 5000000 --out /work/data5m [--accounts 2000]

The accounts and subscriptions come from the simulator (``synth.simulate``), so clients churn the
way the simulator's do and ``train`` has something to learn; they are written by the generator
the end-to-end test on a foreign export uses (``tests/vendor_export.py``: other table and column
names, no contract ids, add-on rows to leave out, amounts in cents, seats and billing columns
nobody maps). The activity is a product log of
``--events`` per-user events of 25 types with numeric type ids, plus the simulator's interactions
(email, call, meeting ... as codes): an event id, the account, a user id, a timestamp, the type id
and a quantity (empty for most types). Each account's users are active while it holds a contract;
an account that leaves uses the product less in its last 90 days. ``mapping.yaml`` maps it all
onto the contract, naming every type id, so ``validate``, ``train`` and ``score`` run on the
export as written:

    churnguard validate --data DIR/export --mapping DIR/mapping.yaml
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from churnguard.domain.churn import activity_periods
from churnguard.domain.contract import CRMData
from churnguard.synth.business import simulate
from tests import vendor_export as vendor

DAY = 86_400
# type id -> name; several names are built-in feature words (meeting, call, emails, tickets, value)
EVENT_TYPES = {
    1: "login",
    2: "page_view",
    3: "report_run",
    4: "export",
    5: "dashboard_view",
    6: "search",
    8: "file_upload",
    9: "comment",
    10: "invite_sent",
    11: "api_call",
    13: "integration_sync",
    14: "settings_change",
    15: "seat_added",
    16: "seat_removed",
    17: "deal_won",
    18: "value",
    19: "emails",
    20: "tickets",
    21: "webinar",
    22: "training_done",
    23: "feature_flag",
    24: "billing_view",
    25: "support_chat",
    26: "mobile_login",
    27: "workflow_run",
}
QUANTITY_TYPES = {17: (500.0, 50_000.0), 18: (1.0, 100.0), 11: (1.0, 400.0)}  # uniform ranges
DECLINE_DAYS = 90  # a leaving account's last days
DECLINE_RATE = 0.35  # its usage then, relative to before


def write_export(out: Path, n_events: int, accounts: int, months: int, seed: int) -> dict[str, int]:
    """Write out/export/ (accounts, subscriptions, activity log) and out/mapping.yaml; rows."""
    business = simulate(clients=accounts, months=months, seed=seed)
    data, rng = business.data, np.random.default_rng(seed)
    export = out / "export"
    export.mkdir(parents=True, exist_ok=True)
    accounts_frame = vendor.accounts(
        data, rng.integers(1, 60, len(data.clients))
    )  # seats: unmapped
    _write(accounts_frame, export / "accounts.csv")
    subscriptions = vendor.subscriptions(data, rng)
    _write(subscriptions, export / "subscriptions.csv")
    log = _activity(data, business.observed_until, n_events, rng)
    _write(log, export / "activity_log.csv")
    (out / "mapping.yaml").write_text(_mapping())
    return {
        "accounts": len(accounts_frame),
        "subscriptions": len(subscriptions),
        "activity_log": log.num_rows,
    }


def _activity(
    data: CRMData, observed_until: pd.Timestamp, n_events: int, rng: np.random.Generator
) -> pa.Table:
    """The product events and the interactions in one log, in time order, as text columns."""
    acct, when, code, qty = _product_events(data, observed_until, n_events, rng)
    i = data.interactions
    acct = np.concatenate([acct, i["client_id"].cat.codes.to_numpy(np.int64)])
    when = np.concatenate([when, i["occurred_at"].to_numpy("datetime64[s]").view(np.int64)])
    codes = i["channel"].astype("str").map(vendor.INTERACTION_CODES).to_numpy(np.int64)
    code = np.concatenate([code, codes])
    qty = np.concatenate([qty, np.full(len(i), np.nan)])
    users = rng.integers(1, 40, len(acct))
    order = np.argsort(when, kind="stable")
    acct, when, code, qty, users = (a[order] for a in (acct, when, code, qty, users))
    ids = pa.array(vendor.acct(pd.Series(data.clients["client_id"])).to_numpy(object)).take(acct)
    stamps = pa.array(when.astype("datetime64[s]"), pa.timestamp("s"))
    return pa.table(
        {
            "EventId": pa.array(np.arange(1, len(acct) + 1)),
            "AcctNo": ids,
            "UserId": pc.binary_join_element_wise(ids, pc.cast(pa.array(users), pa.string()), "-U"),
            "When": pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ"),
            "Code": pa.array(code),
            "Qty": _quantities(qty),
        }
    )


def _quantities(qty: np.ndarray) -> pa.Array:
    """Quantities as text with two decimals at most; empty where there is none."""
    text = pc.cast(pa.array(np.round(qty, 2), from_pandas=True), pa.string())
    return pc.fill_null(text, "")


def _product_events(
    data: CRMData, observed_until: pd.Timestamp, n_events: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n_events usage events (client code, epoch seconds, type id, quantity or NaN)."""
    periods = activity_periods(data.contracts, observed_until=observed_until)
    end_of_data = int(observed_until.timestamp())
    start = periods["start"].to_numpy("datetime64[s]").view(np.int64)
    end = periods["end"].to_numpy("datetime64[s]").view(np.int64)
    end = np.where(periods["end"].isna().to_numpy(), end_of_data, np.minimum(end, end_of_data))
    churned = periods["churned"].to_numpy()
    codes = pd.Index(data.clients["client_id"]).get_indexer(periods["client_id"])
    users = rng.lognormal(1.5, 0.8, len(codes)) * rng.gamma(2.0, 0.5, len(codes))  # x engagement
    decline = np.where(churned, np.minimum(DECLINE_DAYS * DAY, end - start), 0)
    before = (end - start - decline).clip(0)
    weight = users * (before + DECLINE_RATE * decline)
    counts = rng.multinomial(n_events, weight / weight.sum())
    period = np.repeat(np.arange(len(codes)), counts)
    share_before = before / np.maximum(before + DECLINE_RATE * decline, 1)
    late = rng.random(n_events) >= share_before[period]
    offset = rng.random(n_events)
    when = np.where(
        late,
        end[period] - decline[period] + offset * decline[period],
        start[period] + offset * before[period],
    ).astype(np.int64)
    type_ids = np.array(list(EVENT_TYPES))
    popularity = 1.0 / np.arange(1, len(type_ids) + 1) ** 0.9  # a few types make most events
    code = rng.choice(type_ids, n_events, p=popularity / popularity.sum())
    qty = np.full(n_events, np.nan)
    for type_id, (low, high) in QUANTITY_TYPES.items():
        mine = code == type_id
        qty[mine] = rng.uniform(low, high, int(mine.sum()))
    return codes[period].astype(np.int64), np.minimum(when, end_of_data - 1), code, qty


def _write(table: pd.DataFrame | pa.Table, path: Path) -> None:
    """A table as CSV, quoting only what needs it, as CRM exports usually do."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    options = pacsv.WriteOptions(quoting_style="needed")
    pacsv.write_csv(table, path, write_options=options)


def _mapping() -> str:
    """The mapping a user ends up with after ``churnguard init`` and naming the type ids."""
    names = {**{c: n for n, c in vendor.INTERACTION_CODES.items()}, **EVENT_TYPES}
    values = ", ".join(f'"{code}": {name}' for code, name in sorted(names.items()))
    return f"""tables:
  clients: accounts
  contracts: subscriptions
  events: activity_log
columns:
  clients: {{client_id: AcctNo, name: CompanyName, account_manager: Owner, segment: Tier,
    client_since: Opened}}
  contracts:
    contract_id: {{row_number: yes}}
    client_id: AcctNo
    service_line: Plan
    start_date: Started
    end_date: Ends
    cancelled_at: CancelledOn
    monthly_value: {{column: MRRCents, scale: 0.01}}
  events: {{client_id: AcctNo, occurred_at: When, event_type: Code, value: Qty}}
filters:
  contracts:
    drop: {{Kind: [Add-on]}}
values:
  events:
    event_type: {{{values}}}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="product events")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = write_export(args.out, args.events, args.accounts, args.months, args.seed)
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.glob("**/*.*"))}
    record = {"rows": rows, "bytes": sizes, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
