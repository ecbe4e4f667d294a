"""Seeded simulator of a service business: every contract table plus the true churn probability.

The simulator steps month by month, vectorised over clients with numpy. Each client carries a
state that is mostly visible in its records (days since last contact, last NPS and its fall, open
billing disputes, overdue invoices, open high-priority tickets, a renewal due, a price increase on
the current term, tenure, segment) plus a latent satisfaction that drifts (AR(1) around a client
mean) and also drives what is recorded: survey scores and response, inbound contact, disputes,
late payment, ticket volume and priority, usage events, upsell and contraction. Account managers
neglect some clients for a while (a hidden Markov state that cuts outbound contact). Hidden from
the records: the latent satisfaction, the neglect state, and which unpaid invoices will be late.

Hazard. In each month a client leaves with probability ``sigmoid(base + risk_score(state))``,
the state taken on the 1st of the month (the COEF_* constants in ``state.py``). ``base`` is the
decision point: a term ending this month (renewal, lowered by auto-renew), a rolling contract, or a
mid-term cancellation. Leaving at a renewal ends every contract on its end date; otherwise all
contracts are cancelled on a day of the month. Clients who stay renew (back to back, or a few days
late; sometimes with a price increase, upsell or contraction) and may add or cancel a service line
mid-term.

Dates follow ``domain/churn.py``: a contract covers [start_date, end_date or cancelled_at), a
renewal starts on its predecessor's end_date, and churn is the end of the last contract. No
contract starts, ends or is cancelled on the 1st of a month, so a client is unambiguously active or
not at each monthly as_of.

Ground truth. For each client active on the 1st of a month (from the second month on),
``truth.true_probability`` is P(churn date in (as_of, as_of + horizon] | simulator state at
as_of). The first month is exact: the hazard of the as_of state times the share of that month's
possible churn dates inside the window. Later months come from a Rao-Blackwellised Monte Carlo
forward simulation: ``TRUTH_PATHS`` state paths per client follow the simulator's own transition
and the survival-weighted hazards are averaged (churn outcomes are never sampled). Resolutions of
disputes, late invoices and tickets are memoryless in the simulator, so the paths redraw them. On
the default data the Monte Carlo standard error is 0.008 (root mean square; 0.02 where the
probability exceeds 0.1) and doubling the paths moves the oracle AUC by under 0.001. The paths use
their own random stream, so they never change the records.

Modules, by what they simulate: ``clients`` (the population and each client's rates), ``state``
(the client state and the hazard), ``activity`` (interactions, usage events), ``feedback`` (NPS,
CSAT), ``billing`` (invoices, disputes), ``tickets``, ``contracts`` (renewals, upsell,
contraction), ``transition`` (one month of the state), ``truth`` (the true probability),
``simulation`` (the monthly loop), ``tables`` (typed contract tables), ``files`` (the demo folder);
below them ``timeline``, ``sampling`` and ``vocabulary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData
from churnguard.domain.data import TRUTH_FILE_STEM
from churnguard.synth.clients import draw_population
from churnguard.synth.files import DATE_COLUMNS, arrow_table, write_atomic
from churnguard.synth.simulation import run
from churnguard.synth.tables import assemble, truth_frame
from churnguard.synth.timeline import build_calendar, timestamp

DEFAULT_START = pd.Timestamp("2023-01-01", tz="UTC")


@dataclass(frozen=True)
class SimulatedBusiness:
    """Simulated CRM data, the true churn probability per (client, as_of), and the data's end."""

    data: CRMData
    truth: pd.DataFrame
    observed_until: pd.Timestamp


def simulate(
    clients: int = 1000,
    months: int = 36,
    seed: int = 7,
    start: pd.Timestamp = DEFAULT_START,
    horizon_days: int = 90,
) -> SimulatedBusiness:
    """Simulate a service business and return its CRM tables and the true churn probabilities."""
    cal = build_calendar(start, months, horizon_days)
    main_seq, truth_seq = np.random.SeedSequence(seed).spawn(2)
    rng, rng_truth = np.random.default_rng(main_seq), np.random.default_rng(truth_seq)
    pop = draw_population(clients, cal, rng)
    log = run(pop, cal, rng, rng_truth)
    data = assemble(pop, log)
    truth = truth_frame(log["truth"], clients)
    return SimulatedBusiness(data, truth, timestamp(cal.end))


def write_demo_data(
    out: Path,
    clients: int = 1000,
    months: int = 36,
    seed: int = 7,
    fmt: Literal["csv", "parquet"] = "csv",
    horizon_days: int = 90,
) -> SimulatedBusiness:
    """Write one file per contract table named after it (clients.csv, contracts.csv, ... or
    .parquet) plus true_churn_probability.csv|parquet (never an input to features/training).

    Creates `out`. Writes each file atomically (temp file + os.replace) so an interrupted run
    never leaves a half-written table.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    biz = simulate(clients, months, seed, horizon_days=horizon_days)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {**biz.data.tables(), TRUTH_FILE_STEM: biz.truth}
    for name, df in frames.items():
        table = arrow_table(df, DATE_COLUMNS.get(name, ()) if fmt == "csv" else None)
        write_atomic(out / f"{name}.{fmt}", table, fmt)
    return biz
