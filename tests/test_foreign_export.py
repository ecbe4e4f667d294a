"""End to end on a CRM export shaped like nothing churnguard knows: init -> edit -> validate ->
train -> score, with no code, and every active client scored.

The export is the small simulated business rewritten the way another vendor's CRM would write it:
other table and column names, subscriptions without ids and with add-on rows to leave out, amounts
in cents, dates written day first (15/03/2024), one activity log whose event types are numeric
codes (one of them a meeting), and columns the contract does not have: seats per account (a
number that tells churners apart) and the billing period of a subscription (a category).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard import cli
from churnguard.config import Settings
from churnguard.domain.churn import active_clients, contract_stops
from churnguard.domain.contract import CRMData
from churnguard.scoring.loading import load_scorer
from churnguard.store.scores import MAX_PAGE, ScoreStore
from churnguard.synth.business import SimulatedBusiness
from tests import vendor_export as vendor

FIRST_EVENT_CODE = 100  # events table types get 100, 101, ...
DAY_FIRST = "%d/%m/%Y"  # how the vendor writes a subscription's dates


def _seats(data: CRMData, rng: np.random.Generator) -> np.ndarray:
    """Seats per account: few for accounts that leave (and for some others), many for the rest."""
    c = data.contracts.assign(stop=contract_stops(data.contracts))
    last = c.groupby("client_id", observed=True)["stop"].agg(
        lambda s: s.max() if s.notna().all() else pd.NaT
    )
    end = c["start_date"].max()
    leaves = data.clients["client_id"].map(last.lt(end)).fillna(False).to_numpy(dtype=bool)
    few = leaves | (rng.random(len(leaves)) < 0.2)
    return np.where(few, rng.integers(1, 6, len(leaves)), rng.integers(15, 60, len(leaves)))


def write_foreign_export(data: CRMData, folder: Path, seed: int = 0) -> None:
    """The CRM data as another vendor's export: accounts, subscriptions and an activity log."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vendor.accounts(data, _seats(data, rng)).to_csv(folder / "accounts.csv", index=False)
    subscriptions = vendor.subscriptions(data, rng, DAY_FIRST)
    subscriptions.to_csv(folder / "subscriptions.csv", index=False)
    _activity(data).to_csv(folder / "activity_log.csv", index=False)


def _activity(data: CRMData) -> pd.DataFrame:
    """Interactions and events in one log, event types as numeric codes."""
    i, e = data.interactions, data.events
    types = {t: FIRST_EVENT_CODE + k for k, t in enumerate(e["event_type"].cat.categories)}
    log = pd.concat(
        [
            pd.DataFrame(
                {
                    "AcctNo": vendor.acct(i["client_id"]),
                    "When": i["occurred_at"],
                    "Code": i["channel"].astype("str").map(vendor.INTERACTION_CODES),
                    "Qty": "",
                }
            ),
            pd.DataFrame(
                {
                    "AcctNo": vendor.acct(e["client_id"]),
                    "When": e["occurred_at"],
                    "Code": e["event_type"].astype("str").map(types),
                    "Qty": e["value"].map(lambda v: "" if pd.isna(v) else f"{v:g}"),
                }
            ),
        ]
    )
    log = log.sort_values("When", kind="stable")
    return log.assign(When=log["When"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A churnguard home of this module's own (its MLflow store and models)."""
    home = tmp_path_factory.mktemp("foreign-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURNGUARD_HOME", str(home))
        mp.setenv("CHURNGUARD_MODELS_DIR", str(home / "models"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield home


def _edit(draft: str, names: dict[str, str]) -> str:
    """What a user does to the draft: name the event codes, switch the add-on filter on, take
    seats (fewer: more risk) and the billing period as attributes."""
    for code, name in names.items():
        draft = draft.replace(f'"{code}": "{code}"', f'"{code}": "{name}"')
    draft = re.sub(r"# (drop: \{Kind: \[Add-on\]\})  \(rows to leave out\?\)", r"\1", draft)
    draft = re.sub(
        r"# seats: \{column: Seats, kind: number\}.*",
        "seats: {column: Seats, kind: number, direction: less_risk}",
        draft,
    )
    return re.sub(
        r"# billing: \{column: Billing, kind: category\}.*",
        "billing: {column: Billing, kind: category, label: Billing period}",
        draft,
    )


def test_init_edit_validate_train_score_scores_every_active_client(
    business: SimulatedBusiness,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export, draft_file = tmp_path / "export", tmp_path / "mapping.yaml"
    write_foreign_export(business.data, export)

    assert cli.main(["init", "--data", str(export), "--out", str(draft_file)]) == 0
    draft = draft_file.read_text()
    for guess in (
        "clients: accounts",
        "contracts: subscriptions",
        "events: activity_log",
        "contract_id: {row_number: yes}",
        "monthly_value: {column: MRRCents, scale: 0.01}",
        "start_date: Started",
        '"31": "31"',
        "# drop: {Kind: [Add-on]}",
        "client_since: Opened",
        "occurred_at: When",
        'start_date: "%d/%m/%Y"  # not ISO 8601',
        "# seats: {column: Seats, kind: number}  (numbers such as",
        "# billing: {column: Billing, kind: category}  (2 labels such as",
    ):
        assert guess in draft, guess

    event_types = business.data.events["event_type"].cat.categories
    names = {str(code): name for name, code in vendor.INTERACTION_CODES.items()}
    names |= {str(FIRST_EVENT_CODE + k): t for k, t in enumerate(event_types)}
    draft_file.write_text(_edit(draft, names))
    capsys.readouterr()

    data_args = ["--data", str(export), "--mapping", str(draft_file)]
    assert cli.main(["validate", *data_args]) == 0
    report = capsys.readouterr().out
    n_addons = int(re.search(r"contracts [\d,]+ rows \(([\d,]+) dropped", report)[1])
    assert n_addons > 0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["train", *data_args]) == 0
        capsys.readouterr()
        assert cli.main(["score", *data_args]) == 0
        out = capsys.readouterr()
    libraries = [w for w in caught if re.search(r"site-packages", w.filename)]
    assert not libraries, [str(w.message)[:200] for w in libraries]  # none reaches the user
    scored = re.search(r"Scored ([\d,]+) of ([\d,]+) clients \(active at (\S+)\)", out.out)
    assert scored, out.out
    as_of = pd.Timestamp(scored[3], tz="UTC")
    active = active_clients(business.data.contracts, as_of)
    assert int(scored[1].replace(",", "")) == len(active) > 0  # every active client
    assert "client/s" not in out.err  # no progress bar in a log (stderr is no terminal)

    # the attributes are features of the model; seats is a reason in plain words, the billing
    # period never one (a category is context)
    settings = Settings()
    scorer = load_scorer(settings)
    assert {"client_seats", "contract_billing"} <= set(scorer.names)
    with ScoreStore(settings.score_store_url) as store:
        scores, _ = store.latest_scores(limit=MAX_PAGE)
    drivers = [d for s in scores for d in s.drivers]
    seats = [d["reason"] for d in drivers if d["feature"] == "client_seats"]
    assert seats and all(re.fullmatch(r"Seats: \d+", r) for r in seats), seats[:3]
    assert not [d for d in drivers if d["feature"] == "contract_billing"]

    # the run's coverage is stored
    assert cli.main(["runs"]) == 0
    runs = capsys.readouterr().out
    assert f"scored {len(active):,} of {len(active):,} active" in runs.splitlines()[0], runs
