"""Dashboard benchmark: the "My clients" page against a plain SQL query for the same rows.

Usage: python -m bench.dashboard_bench [--books 50 500] [--repeats 20] [--out FILE]

Builds, in a scratch folder, a simulated business's CRM folder (``synth``) and a score store
whose clients are split into books of the given sizes, one account manager each: two scores a
month apart per client (so each has a "what changed"), an action logged for every second client
and a next step for every fourth. The app runs in-process (``create_app`` with a FastAPI
``TestClient``, no model: pages need none), signed in as each book's manager.

Timed, alternating, per book: ``GET /clients`` (revenue at risk order, the first page of 50),
``GET /clients?sort=renewal`` (the renewal order sorts the whole book by renewal date from the
CRM data), and the baseline: one plain SQL query (``sqlite3``, no ORM) that returns the same
50 rows, each client's latest score with its last action and next step. Reported: median and
p90 of each in ms, the median CPU time of the process (all its threads) per call, and each
median over the baseline's (the ratio). Times are the whole request in-process (routing,
session, queries, template), not the network.

Run it from the repository root with the project's venv. PYTHONPATH=<tree>/src runs another
tree's churnguard (a ``git archive`` of an older commit) through the same measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

PAGE = 50
SCORED_AT = 30  # days between the two scores of each client
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

# The page's rows in one plain query: latest score (current_scores), last action, its next step.
BASELINE_SQL = """
WITH last_action AS (
    SELECT id, client_id, action_type, happened_on, logged_by,
           row_number() OVER (PARTITION BY client_id ORDER BY happened_on DESC, id DESC) AS rank
    FROM actions
)
SELECT s.*, a.action_type, a.happened_on, a.logged_by, f.next_step, f.due_on
FROM current_scores c
JOIN scores s ON s.client_id = c.client_id AND s.as_of = c.as_of
    AND s.model_version = c.model_version AND s.source = c.source
LEFT JOIN last_action a ON a.client_id = s.client_id AND a.rank = 1
LEFT JOIN follow_ups f ON f.action_id = a.id
WHERE s.account_manager = ?
ORDER BY s.revenue_at_risk DESC, s.client_id
LIMIT ?
"""


def build_store(home: Path, books: Sequence[int]) -> tuple[Path, dict[str, str]]:
    """A CRM folder and a score store with one book per size; returns (CRM folder, manager keys)."""
    from churnguard.store import keys
    from churnguard.store.followups import plan_follow_up
    from churnguard.store.scores import ScoreStore, describe_change
    from churnguard.synth.business import write_demo_data

    crm = home / "crm"
    business = write_demo_data(crm, clients=sum(books) + 10, months=24, seed=7)
    ids = business.data.clients["client_id"].astype(str).tolist()
    names = dict(zip(ids, business.data.clients["name"].astype(str), strict=True))
    owners = [f"M{size}" for size in books for _ in range(size)]
    latest = business.observed_until.to_pydatetime()
    with ScoreStore(f"sqlite:///{home / 'scores.db'}").create() as store:
        for when in (latest - timedelta(days=SCORED_AT), latest):
            before = store.previous_scores(when)
            records = [
                _record(client_id, owner, names[client_id], when, i)
                for i, (client_id, owner) in enumerate(zip(ids, owners, strict=False))
            ]
            store.save_scores(
                [
                    replace(r, change=describe_change(before.get(r.client_id), r.probability))
                    for r in records
                ]
            )
        for i, client_id in enumerate(ids[: len(owners)]):
            if i % 2 == 0:
                day = latest.date() - timedelta(days=i % 40)
                logged = store.log_action(client_id, "Call", "bench", day, logged_by="bench")
                if i % 4 == 0:
                    plan_follow_up(
                        store, logged.id, client_id, "Call back", day + timedelta(days=14)
                    )
        manager_keys = {f"M{size}": keys.create_key(store, "manager", f"M{size}") for size in books}
    return crm, manager_keys


def _record(client_id: str, owner: str, name: str, when: datetime, i: int) -> Any:
    from churnguard.store.scores import ScoreRecord

    p = round(((i * 37 + when.day * 11) % 100) / 100, 2)
    return ScoreRecord(
        client_id=client_id,
        as_of=when,
        model_version="1",
        probability=p,
        band="low" if p < 0.1 else "medium" if p < 0.3 else "high",
        revenue_at_risk=p * 12_000,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
        account_manager=owner,
        client_name=name,
        segment="smb",
        drivers=[
            {"feature": "days_since_contact", "value": 74, "contribution": 0.8,
             "reason": "No contact for 74 days"},
        ],
        actions=[{"action": "Schedule a check-in call", "reason": "No contact for 74 days"}],
    )  # fmt: skip


def _signed_in(client: Any, key: str) -> None:
    client.cookies.clear()
    token = CSRF.search(client.get("/sign-in").text)
    assert token is not None, "no sign-in form"
    answer = client.post("/sign-in", data={"api_key": key, "csrf": token.group(1), "next": "/"})
    assert answer.status_code == 303, f"sign-in failed: {answer.status_code}"


Timing = tuple[float, float]  # wall seconds, CPU seconds of the whole process (all threads)


def _page(client: Any, url: str) -> Callable[[], Timing]:
    def call() -> Timing:
        start, cpu = time.perf_counter(), time.process_time()
        answer = client.get(url)
        elapsed = time.perf_counter() - start, time.process_time() - cpu
        assert answer.status_code == 200 and answer.text.count("<tr data-client-id") == PAGE
        return elapsed

    return call


def _baseline(db: Path, manager: str) -> Callable[[], Timing]:
    conn = sqlite3.connect(db, check_same_thread=False)

    def call() -> Timing:
        start, cpu = time.perf_counter(), time.process_time()
        rows = conn.execute(BASELINE_SQL, (manager, PAGE)).fetchall()
        elapsed = time.perf_counter() - start, time.process_time() - cpu
        assert len(rows) == PAGE
        return elapsed

    return call


def run(books: Sequence[int], repeats: int, home: Path) -> dict[str, Any]:
    """Every book's page (both orders) and baseline, alternating; their figures and ratios."""
    from fastapi.testclient import TestClient

    from churnguard.config import Settings
    from churnguard.service import create_app

    crm, manager_keys = build_store(home, books)
    settings = Settings(
        home=home,
        models_dir=home / "models",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        crm_data=str(crm),
        model_retry_seconds=0,
        key_cache_seconds=0,
    )
    app = create_app(settings)
    results: dict[str, Any] = {"books": {}}
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        app.state.dashboard.crm.get()  # wait for the CRM data (loaded in the background)
        for size in books:
            manager = f"M{size}"
            _signed_in(client, manager_keys[manager])
            timed = {
                "page": _page(client, "/clients"),
                "page, renewal order": _page(client, "/clients?sort=renewal"),
                "plain SQL": _baseline(home / "scores.db", manager),
            }
            results["books"][size] = _alternate(timed, repeats)
    results["load_average_1min"] = os.getloadavg()[0]
    return results


def _alternate(timed: dict[str, Callable[[], Timing]], repeats: int) -> dict[str, Any]:
    """Each call `repeats` times, in turns, after one untimed call; medians, p90, ratios."""
    for call in timed.values():
        call()
    times: dict[str, list[Timing]] = {name: [] for name in timed}
    for _ in range(repeats):
        for name, call in timed.items():
            times[name].append(call())
    base = statistics.median(wall for wall, _ in times["plain SQL"])
    return {name: _figures(t, base) for name, t in times.items()}


def _figures(timings: list[Timing], base: float) -> dict[str, float]:
    walls = [wall for wall, _ in timings]
    return {
        "median_ms": statistics.median(walls) * 1000,
        "p90_ms": statistics.quantiles(walls, n=10)[-1] * 1000
        if len(walls) > 1
        else walls[0] * 1000,
        "cpu_median_ms": statistics.median(cpu for _, cpu in timings) * 1000,
        "ratio": statistics.median(walls) / base,
    }


def format_results(results: dict[str, Any]) -> str:
    load = results["load_average_1min"]
    lines = [f"Dashboard 'My clients', first page of {PAGE} rows (load {load:.1f})"]
    header = f"{'median ms':>9} {'p90 ms':>8} {'CPU ms':>7} {'/ plain SQL':>11}"
    lines.append(f"  {'book':>6}  {'what':<22} {header}")
    for size, figures in results["books"].items():
        for name, f in figures.items():
            median, p90, cpu, ratio = f["median_ms"], f["p90_ms"], f["cpu_median_ms"], f["ratio"]
            figures_text = f"{median:9.1f} {p90:8.1f} {cpu:7.1f} {ratio:10.1f}x"
            lines.append(f"  {size:>6}  {name:<22} {figures_text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--books", type=int, nargs="+", default=[50, 500], help="clients per book")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if min(args.books) < PAGE:
        p.error(f"each book needs at least {PAGE} clients (one full page)")
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        results = run(args.books, args.repeats, Path(tmp))
    results["when"] = datetime.now().astimezone().isoformat(timespec="seconds")
    results["today"] = date.today().isoformat()
    print(format_results(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
