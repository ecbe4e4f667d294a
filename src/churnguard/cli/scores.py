"""`score`, `runs`, `alerts`, `export`, `serve`: scores into the store, and out of it."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from churnguard.cli.data import load_data

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    from churnguard.config import Settings

logger = logging.getLogger("churnguard")


# --- score --------------------------------------------------------------------------------------


def score(args: argparse.Namespace, settings: Settings) -> int:
    """Score every client active at --as-of into the score store and print a summary."""
    from datetime import UTC, datetime

    from churnguard.domain.coverage import default_as_of, scoring_coverage
    from churnguard.scoring.batch import format_summary, score_to_store
    from churnguard.scoring.loading import load_scorer
    from churnguard.store.runs import ScoringRun, record_run
    from churnguard.store.scores import ScoreStore

    if args.engine == "spark":
        return score_on_spark(args, settings)
    started = datetime.now(UTC)
    scorer = load_scorer(settings)  # before the data: no model, no point loading it
    data = load_data(args)
    as_of, note = args.as_of, ""
    if as_of is None:  # the end of the data, or of the contracts when they stop well before it
        chosen = default_as_of(data)
        as_of, note = chosen.as_of, chosen.note
        if chosen.note:
            print(chosen.note)
    explain_from = args.explain_from
    with ScoreStore(settings.score_store_url) as store:
        summary = score_to_store(
            data, scorer, store.create(), as_of, drivers=args.drivers, explain_from=explain_from
        )
        covered = scoring_coverage(data, as_of)
        run = ScoringRun.of(
            covered, model_version=summary.model_version, n_scored=summary.n_scored,
            source=str(args.data), started_at=started, note=note,
        )  # fmt: skip
        record_run(store, run)  # `churnguard runs` lists them
    print(format_summary(summary))
    print(covered.format())
    return _alert_after_scoring(settings)


def score_on_spark(args: argparse.Namespace, settings: Settings) -> int:
    """`score --engine spark`: scores to a Parquet table (and, with --to-store, the store)."""
    from datetime import UTC, datetime

    from churnguard.domain.mapping import Mapping, load_mapping
    from churnguard.scoring.batch import format_summary
    from churnguard.scoring.loading import load_scorer
    from churnguard.spark.scoring import score_to_parquet
    from churnguard.spark.session import start_session
    from churnguard.store.runs import ScoringRun, record_run
    from churnguard.store.scores import ScoreStore

    if args.out is None:
        print("error: --engine spark needs --out (the Parquet table of scores)", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    scorer = load_scorer(settings)
    mapping = load_mapping(args.mapping) if args.mapping is not None else Mapping()
    spark = start_session(args.master, args.spark_conf)
    store = ScoreStore(settings.score_store_url) if args.to_store else None
    try:
        run = score_to_parquet(
            spark, str(args.data), mapping, scorer, args.as_of, args.out, args.drivers,
            args.explain_from, store.create() if store else None, args.partitions,
        )  # fmt: skip
        if store is not None:  # `churnguard runs` lists it, with its coverage
            record = ScoringRun.of(
                run.coverage, model_version=run.summary.model_version,
                n_scored=run.summary.n_scored, source=str(args.data), started_at=started,
                note=run.note,
            )  # fmt: skip
            record_run(store, record)
    finally:
        if store is not None:
            store.close()
    if run.note:
        print(run.note)
    print(format_summary(run.summary))
    print(run.coverage.format())
    print(f"Scores written to {args.out} (Parquet)")
    if store is None:
        print(
            "Not written to the score store (--to-store), nor recorded in `churnguard runs`: "
            "alerts and the dashboard do not see them"
        )
        return 0
    return _alert_after_scoring(settings)


def runs(args: argparse.Namespace, settings: Settings) -> int:
    """List the latest scoring runs: what each scored and skipped, and why."""
    from churnguard.store.runs import latest_runs
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        found = latest_runs(store.create(), args.limit)
    for run in found:
        print(run.format())
    if not found:
        print("No scoring run recorded yet: `churnguard score` records one.")
    return 0


def _alert_after_scoring(settings: Settings) -> int:
    """Send the alert digests after a scoring run, when SMTP or a webhook is configured."""
    from churnguard.alerts import channels

    if not channels(settings):
        return 0
    return alerts(argparse.Namespace(dry_run=False), settings)


def alerts(args: argparse.Namespace, settings: Settings) -> int:
    """Send the alert digests the latest scores call for (--dry-run: print them instead)."""
    from datetime import UTC, datetime

    from churnguard.alerts import channels, digest_text, run_alerts
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        run = run_alerts(
            store.create(), settings, today=datetime.now(UTC).date(), dry_run=args.dry_run
        )
    if args.dry_run:
        for digest in run.digests:
            print(f"To: {digest.recipient or '(no address)'}\nSubject: {digest.subject}\n")
            print(digest_text(digest))
        print(f"Dry run: {len(run.digests)} digest(s) would be sent; nothing was sent.")
        return 0
    if not channels(settings):
        print("No alert channel is configured (CHURNGUARD_SMTP_HOST, CHURNGUARD_WEBHOOK_URL).")
        return 0
    sent = ", ".join(f"{n:,} by {c}" for c, n in run.sent.items()) or "nothing new"
    print(f"Alerts: {len(run.digests)} digest(s); sent {sent}.")
    return 0


# --- export -------------------------------------------------------------------------------------


def export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the clients' latest scores as CSV (the dashboard's and the API's columns)."""
    from churnguard.store.export import csv_lines, export_rows
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        rows = export_rows(
            store.create(),
            manager=None if args.manager is None else args.manager.strip(),
            band=args.band,
            search=args.search,
            order_by=args.sort,
        )
        if args.out is None:
            sys.stdout.writelines(csv_lines(rows))
            return 0
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            lines = sum(out.write(line) >= 0 for line in csv_lines(rows))
    clients = lines - 1  # the header
    print(f"Wrote {clients:,} client{'' if clients == 1 else 's'} to {args.out}", file=sys.stderr)
    return 0


# --- serve, keys --------------------------------------------------------------------------------


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP service (one uvicorn worker) until interrupted."""
    import uvicorn

    from churnguard.service import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        workers=1,
        access_log=args.access_log,
        log_level="debug" if args.verbose else "info",
    )
    return 0
