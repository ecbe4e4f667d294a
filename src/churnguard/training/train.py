"""Training runs: ``train`` on a CRM history, ``train_table`` on a flat table.

Both run one pipeline: data -> rows for training, validation and test (or folds) -> candidates
-> selection -> calibration -> held-out evaluation -> promotion gate -> one MLflow run ->
registered version -> alias ``champion`` or ``challenger`` -> local copy of the champion. The two
modes differ only in how the dataset and the split are made (``dataset.py`` for monthly CRM
snapshots split in time, ``table.py`` for a flat table split in time or cross-validated) and in
what they add to the summary (the CRM mode's rolling backtest and the simulator's oracle).

A flat table's model is a ``FlatChurnModel``: its inputs are the table's own columns, cleaned by
the column schema learned in training. A champion is compared only with a model over the same
inputs (CRM features, or the same table label and horizon); cross-validated flat models compare
on their recorded cross-validated metrics when trained on the same data (same digest).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData
from churnguard.modeling.calibration import Calibrator
from churnguard.modeling.model import ChurnModel, Estimator, ModelKind, align_inputs
from churnguard.modeling.table import KIND_NAMES, FlatChurnModel, TableSchema
from churnguard.training.dataset import (
    Dataset,
    Split,
    TrainOptions,
    build_dataset,
    categories,
    check_enough_data,
    data_digest,
    day,
    span,
    split_dates,
)
from churnguard.training.evaluate import evaluate, summarize_backtest
from churnguard.training.horizons import attach_horizons
from churnguard.training.pipeline import (
    REPORTED,
    Evaluation,
    Fit,
    Promotion,
    TrainResult,
    evaluate_model,
    evaluation,
    fit_on_windows,
    gate,
    refit_all,
    useless_because,
)
from churnguard.training.report import backtest_line, oracle_line
from churnguard.training.resampling import (
    backtest,
    before_test,
    compare_with_oracle,
    cross_validate,
    refit_before_test,
)
from churnguard.training.table import (
    CV_NOTE,
    FLAT_MODE,
    OUT_OF_TIME_NOTE,
    FlatOptions,
    TableData,
    check_windows,
    input_example,
    leak_warnings,
    load_table,
    split_by_time,
    windows_table,
)
from churnguard.training.tablefit import fit_table_model, fit_table_windows, flat_model, refit_table
from churnguard.training.tracking import log_and_register, model_metadata

if TYPE_CHECKING:
    from churnguard.modeling.registry import Registry

logger = logging.getLogger(__name__)

CRM_MODE = "CRM history"
CRM_EVALUATION = (
    "out-of-time: trained on the earliest snapshots, validated and tested on later ones, one "
    "horizon apart"
)
CRM_ADVICE = "export more history (or more clients), or train for a shorter horizon (--horizon)"
TABLE_ADVICE = "add rows (more clients, or more snapshots per client with --time)"


# ---------------------------------------------------------------------------------- CRM history


def train(
    data: CRMData,
    registry: Registry,
    models_dir: Path,
    options: TrainOptions | None = None,
    truth: pd.DataFrame | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and (if it passes the gate) promote a churn model."""
    options = options or TrainOptions()
    with _step("snapshots, labels and features"):
        ds = build_dataset(data, options)
    return train_on(ds, registry, models_dir, options, truth)


def train_on(
    ds: Dataset,
    registry: Registry,
    models_dir: Path,
    options: TrainOptions,
    truth: pd.DataFrame | None = None,
    digest: str | None = None,
) -> TrainResult:
    """The pipeline from a built dataset on (split, fit, calibrate, evaluate, log, promote).

    ``digest``: the data's digest when ``ds.data`` is not the whole data (a Spark backfill's).
    """
    timings: dict[str, float] = {}
    split = split_dates(
        ds.dates,
        options.horizon_days,
        options.test_periods,
        options.val_periods,
        options.min_train_periods,
    )
    check_enough_data(ds, split, options)
    logger.info("split: train %s | validation %s | test %s", *map(span, _windows(split)))
    X = align_inputs(ds.features, ds.feature_set.names, categories(ds))
    package = partial(package_crm, ds, options)
    train_rows, val, test_rows = (ds.rows(d) for d in _windows(split))

    with _step("fitting candidates", timings):  # 1. candidates, selection, calibration
        X_fit, y_fit = (X.loc[train_rows], X.loc[val]), (ds.y(train_rows), ds.y(val))
        events = ds.events(train_rows)
        fit = fit_on_windows(X_fit, y_fit, ds.feature_set.categorical, events, options, package)
        fit = replace(fit, model=refit_before_test(ds, X, split, fit, options, package))
    with _step("test evaluation", timings):  # 2. the test window, the oracle
        y, revenue = ds.y(test_rows), ds.revenue(test_rows)
        test = evaluate_model(fit.model, X.loc[test_rows], y, options, revenue)
        oracle = compare_with_oracle(truth, ds, test, split) if truth is not None else None
    with _step("backtest", timings):  # 3. rolling-origin backtest
        folds = backtest(ds, X, fit.chosen, (split, test), options, package, truth)
    with _step("final refit on all labelled snapshots", timings):  # 4. as fresh as the data
        y_all = ds.labels["churned"].to_numpy()
        final = refit_all(fit, X, y_all, ds.feature_set.categorical, options, package)
    with _step("risk over several horizons", timings):  # 4b. 30/90/180 days, the renewal
        final = attach_horizons(final, ds, options.seed, options.grace_days)
    result = TrainResult(
        mode=CRM_MODE,
        evaluation=CRM_EVALUATION,
        fit=replace(fit, model=final),
        test=test,
        folds=folds,
        windows=_crm_windows(ds, split),
        promotion=Promotion(False, ""),
        digest=digest or data_digest(ds.data),
        params=_crm_params(ds, split, options),
        about=_crm_about(ds, options),
        notes=[
            oracle_line(oracle),
            backtest_line(folds, summarize_backtest(folds)),
            f"Registered model: {_crm_final(ds, split, options)}",
        ],
        oracle=oracle,
        dataset=ds,
        timings=timings,
    )
    result = _with_metadata(result)
    with _step("promotion gate", timings):  # 5. compare with the champion
        rescore = partial(_rescore_crm, ds, split, result, test)
        useless = useless_because(test, CRM_ADVICE)
        promotion = gate(registry, test.metrics, rescore, options.gate_tolerance, "", useless)
    example = result.model.inputs(ds.features.loc[test_rows].head(5))
    with _step("MLflow run and registry", timings):  # 6. log, register, alias, local copy
        result = replace(result, promotion=promotion)
        return log_and_register(result, registry, models_dir, options.experiment, example)


def package_crm(
    ds: Dataset,
    options: TrainOptions,
    estimator: Estimator,
    kind: ModelKind,
    calibrator: Calibrator,
) -> ChurnModel:
    """A fitted estimator and calibrator as the ChurnModel over the dataset's features."""
    fs = ds.feature_set
    return ChurnModel(
        fs, kind, estimator, calibrator, options.horizon_days, fs.names, categories(ds)
    )


def _rescore_crm(
    ds: Dataset, split: Split, result: TrainResult, test: Evaluation, champion: ChurnModel
) -> tuple[dict[str, float], dict[str, float]] | str:
    """This model's and the champion's metrics on the test snapshots the champion did not learn
    from (its recorded out-of-time metrics on the same data when it learnt from them all), or
    why they do not compare."""
    model = result.model
    if isinstance(champion, FlatChurnModel):
        return "is a flat-table model (its inputs are a table's columns, not CRM features)"
    if champion.horizon_days != model.horizon_days:
        return (
            f"predicts a {champion.horizon_days}-day horizon, this model {model.horizon_days} days"
        )
    params = champion.metadata.get("params", {})
    learnt = params.get("labelled_until", params.get("train_end"))
    rows = ds.labels.loc[ds.rows(split.test), ["client_id", "as_of"]]
    unseen = (rows["as_of"] > pd.Timestamp(learnt, tz="UTC")).to_numpy() if learnt else None
    if unseen is None or unseen.all():
        return test.metrics, _score(champion, ds, rows, test.y)
    if unseen.any():
        mine = evaluate(test.y[unseen], test.p[unseen])
        return mine, _score(champion, ds, rows.loc[unseen], test.y[unseen])
    recorded = champion.metadata.get("metrics", {})
    if champion.metadata.get("data_digest") != result.digest or "test_roc_auc" not in recorded:
        return "learnt from every test snapshot of this run, so its metrics do not compare"
    return test.metrics, {k: float(recorded[f"test_{k}"]) for k in REPORTED}


def _score(
    champion: ChurnModel, ds: Dataset, rows: pd.DataFrame, y: np.ndarray
) -> dict[str, float]:
    """The champion's metrics on some snapshots, features computed for its own feature set."""
    features = ds.compute(ds.data, rows, champion.feature_set)
    return evaluate(y, champion.predict_proba(features))


def _crm_final(ds: Dataset, split: Split, options: TrainOptions) -> str:
    """What the registered model was fitted on, and what the metrics are of."""
    tested = int(before_test(ds, split, options.horizon_days).sum())
    return (
        f"refitted on all {len(ds.labels):,} labelled snapshots through {day(ds.dates[-1])}; "
        f"the metrics above are out of time, from the same recipe (chosen and calibrated on the "
        f"validation window) refitted on the {tested:,} snapshots labelled before the test window"
    )


def _crm_windows(ds: Dataset, split: Split) -> pd.DataFrame:
    rows = []
    for name, dates in zip(("train", "validation", "test"), _windows(split), strict=True):
        mask = ds.rows(dates)
        rows.append(
            {
                "window": name,
                "start": dates[0],
                "end": dates[-1],
                "rows": int(mask.sum()),
                "churned": int(ds.y(mask).sum()),
                "events": ds.events(mask),
            }
        )
    return pd.DataFrame(rows)


def _crm_params(ds: Dataset, split: Split, options: TrainOptions) -> dict[str, object]:
    return {
        "source": options.source,
        "horizon_days": options.horizon_days,
        "grace_days": options.grace_days,
        "seed": options.seed,
        "snapshot_freq": "MS",
        "snapshot_dates": ",".join(day(d) for d in ds.dates),
        "observed_until": day(ds.observed_until),
        "history_start": day(ds.history_start),
        **split.params(),
        "gap_days": options.horizon_days,
        "test_periods": options.test_periods,
        "val_periods": options.val_periods,
        "n_snapshots": len(ds.labels),
        "n_clients": len(ds.data.clients),
        "train_events": ds.events(ds.rows(split.train)),
        "labelled_until": day(ds.dates[-1]),
        "final_fit": _crm_final(ds, split, options),
    }


def _crm_about(ds: Dataset, options: TrainOptions) -> list[str]:
    return [
        f"Trained on {len(ds.labels):,} labelled snapshots of {ds.labels['client_id'].nunique():,} "
        f"clients, horizon {options.horizon_days} days (grace {options.grace_days} days, seed "
        f"{options.seed}); history from {day(ds.history_start)}",
        f"Evaluation: {CRM_EVALUATION}",
    ]


def _windows(split: Split) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, pd.DatetimeIndex]:
    return split.train, split.validation, split.test


# ---------------------------------------------------------------------------------- flat table


def train_table(
    source: str | Path | pd.DataFrame,
    label: str,
    id_column: str,
    time_column: str | None = None,
    *,
    registry: Registry,
    models_dir: Path,
    options: FlatOptions | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and (if it passes the gate) promote a flat-table model.

    Args:
        source: a CSV or Parquet file, or a DataFrame; one row per client (per time with a time
            column).
        label: the churn column (1/0, true/false or yes/no).
        id_column: the client id column (never a feature).
        time_column: when given, an out-of-time split on it; otherwise cross-validation.
        registry: the MLflow registry to log and register in.
        models_dir: where the champion's local copy goes when this model is promoted.
        options: FlatOptions (defaults when None).
    """
    options = options or FlatOptions()
    data = load_table(source, label, id_column, time_column, options)
    logger.info("flat table: %s rows, %s churned", len(data.y), data.n_positive)
    test_rows: np.ndarray | None = None
    if data.times is None:
        logger.info("%s; cross-validating ...", CV_NOTE)
        fit_table = partial(fit_table_model, options=options)
        folds, test = cross_validate(
            data.rows,
            data.y,
            fit_table,
            options.folds,
            options.repeats,
            options.train,
            options.workers,
        )
        logger.info("final model on all %s rows ...", len(data.y))
        fit, windows = fit_table_model(data.rows, data.y, options), pd.DataFrame()
    else:
        masks = split_by_time(data.times, options.val_fraction, options.test_fraction)
        check_windows(data.y, masks, options)
        fit = fit_table_windows(data.rows, data.y, masks[0], masks[1], options)
        test_rows, held_out = masks[2], data.rows[masks[2]]
        p, raw = fit.model.predict_proba(held_out), fit.model.raw_proba(held_out)
        test = evaluation(data.y[test_rows], p, raw, options.train)
        folds, windows = pd.DataFrame(), windows_table(data.times, data.y, masks)
        fit = replace(fit, model=refit_table(fit, data, options))
    schema = _schema(fit)
    result = TrainResult(
        mode=FLAT_MODE,
        evaluation=_table_evaluation(data, options),
        fit=fit,
        test=test,
        folds=folds,
        windows=windows,
        promotion=Promotion(False, ""),
        digest=data.digest,
        params=_table_params(data, schema, windows, options),
        about=_table_about(data, schema, options),
        texts={"schema.json": schema_json(schema, data.leaked)},
        warnings=_table_warnings(data, schema, options),
        dataset=data,
    )
    result = _with_metadata(result)
    where = "in cross-validation on the same data" if test_rows is None else ""
    rescore = partial(_rescore_table, data, result.model, test_rows)
    useless = useless_because(test, TABLE_ADVICE)
    tolerance = options.train.gate_tolerance
    promotion = gate(registry, result.metrics, rescore, tolerance, where, useless)
    result = replace(result, promotion=promotion)
    example = input_example(data, flat_model(result.model))
    return log_and_register(result, registry, models_dir, options.train.experiment, example)


def _rescore_table(
    data: TableData, model: ChurnModel, test: np.ndarray | None, champion: ChurnModel
) -> dict[str, float] | str:
    """The champion's metrics on this run's test rows or from its own cross-validation on the
    same data, or why it has none that compare."""
    params = champion.metadata.get("params", {})
    if not isinstance(champion, FlatChurnModel) or params.get("mode") != FLAT_MODE:
        return "is a CRM-data model (its inputs are CRM features, not this table's columns)"
    if params.get("label") != data.label:
        return f"predicts label {params.get('label')!r}, this model {data.label!r}"
    if champion.horizon_days != model.horizon_days:
        return f"has horizon {champion.horizon_days} days, this model {model.horizon_days}"
    recorded = champion.metadata.get("metrics", {})
    same = champion.metadata.get("data_digest") == data.digest
    if test is not None:  # the same table: the champion learnt from these rows, use its record
        if same and all(f"test_{k}" in recorded for k in REPORTED):
            return {k: float(recorded[f"test_{k}"]) for k in REPORTED}
        return evaluate(data.y[test], champion.predict_proba(data.rows[test]))
    if not same or any(f"cv_{k}" not in recorded for k in REPORTED):
        return "was cross-validated on other data, so its metrics do not compare"
    return {k: float(recorded[f"cv_{k}"]) for k in REPORTED}


def _table_evaluation(data: TableData, options: FlatOptions) -> str:
    if data.times is not None:
        return OUT_OF_TIME_NOTE
    return (
        f"{CV_NOTE} ({options.folds} folds x {options.repeats} repeats, seed "
        f"{options.train.seed}; the whole recipe refitted inside each training part)"
    )


def _table_params(
    data: TableData, schema: TableSchema, windows: pd.DataFrame, options: FlatOptions
) -> dict[str, object]:
    params: dict[str, object] = {
        "source": data.source,
        "label": data.label,
        "label_positive": options.positive or "",
        "id_column": data.id_column,
        "time_column": data.time_column or "",
        "horizon_days": options.horizon_days,
        "seed": options.train.seed,
        "n_rows": len(data.y),
        "n_positive": data.n_positive,
        "n_unlabelled_left_out": data.unlabelled,
        **{f"{kind}_columns": ",".join(schema.of_kind(kind)) for kind in KIND_NAMES},
        "dropped_columns": _dropped(data, schema),
    }
    if windows.empty:
        params |= {"folds": options.folds, "repeats": options.repeats}
        return params | {"inner_folds": options.inner_folds}
    for row in windows.itertuples():
        params |= {f"{row.window}_start": str(row.start), f"{row.window}_end": str(row.end)}
    final = "refitted on all labelled rows; the metrics are out of time, from the train-window fit"
    return params | {"final_fit": final}


def _table_warnings(data: TableData, schema: TableSchema, options: FlatOptions) -> list[str]:
    """Rows and values left out, the columns left out as leaks, then the model's columns strong
    enough to check."""
    unlabelled = [f"{data.unlabelled:,} rows without a label left out"] if data.unlabelled else []
    left_out = [f"column {name!r} left out: {why}" for name, why in data.leaked.items()]
    strong = leak_warnings(data, schema, options)
    return unlabelled + data.notes + left_out + strong


def _dropped(data: TableData, schema: TableSchema) -> str:
    """The columns left out and why, as one line ("" for none)."""
    dropped = data.leaked | schema.dropped
    return "; ".join(f"{c} ({why})" for c, why in dropped.items())


def _table_about(data: TableData, schema: TableSchema, options: FlatOptions) -> list[str]:
    share = data.n_positive / len(data.y)
    label = repr(data.label)
    if options.positive is not None:
        label += f" (churned: {options.positive!r})"
    counts = ", ".join(f"{len(schema.of_kind(k))} {k}" for k in KIND_NAMES)
    dropped = _dropped(data, schema) or "none"
    return [
        f"Trained on {len(data.y):,} rows of {data.source} ({data.n_positive:,} churned, "
        f"{share:.1%}); label {label}, id {data.id_column!r}",
        f"Columns used: {counts}; left out: {dropped}",
        f"Evaluation: {_table_evaluation(data, options)}",
    ]


def schema_json(schema: TableSchema, leaked: dict[str, str] | None = None) -> str:
    """The column schema as JSON (logged with the run); ``leaked``: the columns the leakage
    check left out, with the others left out."""
    import json

    dropped = (leaked or {}) | schema.dropped
    return json.dumps({"kinds": schema.kinds, "dropped": dropped}, indent=1)


def _schema(fit: Fit) -> TableSchema:
    return flat_model(fit.model).schema


# ---------------------------------------------------------------------------------- shared


def _with_metadata(result: TrainResult) -> TrainResult:
    """The result with the model's metadata (params, headline metrics, provenance) set."""
    model = replace(result.model, metadata=model_metadata(result))
    return replace(result, fit=replace(result.fit, model=model))


@contextmanager
def _step(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Log the start and duration (wall and this process's CPU) of a pipeline step."""
    logger.info("%s ...", name)
    started, cpu = time.perf_counter(), time.process_time()
    yield
    elapsed = time.perf_counter() - started
    logger.info("%s done in %.1f s (CPU %.1f s)", name, elapsed, time.process_time() - cpu)
    if timings is not None:
        timings[name] = elapsed
