"""SYNTHETIC look-alike of a public telecom churn table (5,000 rows, about 14% churn).

Nothing here is real data. It imitates the shape of the public "telecom churn" tables (usage
minutes, calls and charges by day, evening, night and international; service calls; plans; a
state), so the defaults are tested on something other than Telco: churn follows from strong
*interactions* between usage columns (a high total bill without a voice-mail plan; many service
calls with little day use; an international plan with much, or very little, international use),
which a linear model cannot express and which shallow, heavily regularised trees learn slowly.
Charges are the minutes times a fixed rate, exact duplicates of information as in the public
tables. About 5% of labels are drawn at a base rate, so no model is perfect.

Usage: python -m bench.quality.lookalike [--rows 5000] [--seed 7]   (prints a summary)
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

STATES = [f"S{i:02d}" for i in range(51)]  # 51 meaningless states, as in the public tables
RATES = {"day": 0.17, "eve": 0.085, "night": 0.045, "intl": 0.27}  # dollars per minute


def lookalike(rows: int = 5000, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature columns and 0/1 churn of the synthetic telecom table."""
    rng = np.random.default_rng(seed)
    frame = _usage(rng, rows)
    return frame, _churn(rng, frame)


def _usage(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Plans, usage by period, charges (minutes x rate) and service calls."""
    vmail = rng.random(n) < 0.27
    cols: dict[str, object] = {
        "state": rng.choice(STATES, n),
        "account_length": rng.normal(100, 40, n).clip(1, 243).round(),
        "area_code": rng.choice(["area_408", "area_415", "area_510"], n, p=[0.25, 0.5, 0.25]),
        "international_plan": np.where(rng.random(n) < 0.1, "yes", "no"),
        "voice_mail_plan": np.where(vmail, "yes", "no"),
        "number_vmail_messages": np.where(vmail, rng.normal(29, 8, n).clip(4, 52).round(), 0),
    }
    sd = {"day": 55, "eve": 50, "night": 50, "intl": 2.8}
    mean = {"day": 180, "eve": 200, "night": 200, "intl": 10.2}
    for period in ("day", "eve", "night", "intl"):
        minutes = rng.normal(mean[period], sd[period], n).clip(0).round(1)
        calls = rng.poisson(4.5 if period == "intl" else 100, n)
        cols[f"total_{period}_minutes"] = minutes
        cols[f"total_{period}_calls"] = calls
        cols[f"total_{period}_charge"] = (minutes * RATES[period]).round(2)
    cols["number_customer_service_calls"] = rng.poisson(1.55, n)
    return pd.DataFrame(cols)


def _churn(rng: np.random.Generator, f: pd.DataFrame) -> np.ndarray:
    """Churn from interactions between usage columns, with 5% of labels at a base rate."""
    bill = f["total_day_charge"] + f["total_eve_charge"] + f["total_night_charge"]
    no_vmail = f["voice_mail_plan"] == "no"
    intl = f["international_plan"] == "yes"
    calls = f["number_customer_service_calls"]
    logit = (
        -5.0
        + 1.5 * np.tanh((bill - 68) / 2) * no_vmail  # a high bill, without voice mail
        + 5.0 * (bill > 68) * no_vmail
        + 6.0 * ((calls >= 4) & (f["total_day_minutes"] < 170))  # complaints from light users
        + 1.0 * (calls >= 4)
        + 7.5 * (intl & ((f["total_intl_minutes"] > 13) | (f["total_intl_calls"] <= 2)))
        + 0.8 * intl
        + 0.015 * (f["total_day_minutes"] - 180) * (f["total_eve_minutes"] > 250)
    )
    p = 1 / (1 + np.exp(-logit.to_numpy(dtype=np.float64)))
    y = rng.random(len(f)) < p
    noise = rng.random(len(f)) < 0.05
    y[noise] = rng.random(int(noise.sum())) < 0.14
    return y.astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows, y = lookalike(args.rows, args.seed)
    print(f"SYNTHETIC telecom look-alike: {len(y):,} rows, {y.mean():.1%} churn")
    print(rows.describe(include="all").T.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
