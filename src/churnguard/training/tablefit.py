"""A flat table's model: the recipe on its rows (out of fold, or on windows in time), the design
matrix from raw rows and the column schema, and the refit on every labelled row."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from churnguard.features.catalog import FeatureSet
from churnguard.modeling.calibration import Calibrator
from churnguard.modeling.model import ChurnModel, Estimator, ModelKind, align_inputs
from churnguard.modeling.table import FlatChurnModel, TableSchema, infer_schema
from churnguard.modeling.table import prepare_rows as prepare_table_rows
from churnguard.training.pipeline import Fit, fit_on_windows, fit_out_of_fold, refit_all
from churnguard.training.table import FlatOptions, TableData


def fit_table_model(rows: pd.DataFrame, y: np.ndarray, options: FlatOptions | None = None) -> Fit:
    """The flat-table recipe on rows (feature columns only): out-of-fold selection and
    calibration, then the chosen candidate refitted on all rows."""
    options = options or FlatOptions()
    schema = infer_schema(rows, options.max_unique_share)
    X, cats = design(rows, schema)
    package = partial(package_table, schema, cats, options)
    return fit_out_of_fold(X, y, schema.categorical, options.inner_folds, options.train, package)


def fit_table_windows(
    rows: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    validation: np.ndarray,
    options: FlatOptions,
) -> Fit:
    """The pipeline's window steps on a flat table: fit on train, select and calibrate on
    validation."""
    schema = infer_schema(rows[train], options.max_unique_share)
    X_tr, cats = design(rows[train], schema)
    X_val, _ = design(rows[validation], schema, cats)
    package = partial(package_table, schema, cats, options)
    events = int(y[train].sum())
    X, ys = (X_tr, X_val), (y[train], y[validation])
    return fit_on_windows(X, ys, schema.categorical, events, options.train, package)


def refit_table(fit: Fit, data: TableData, options: FlatOptions) -> ChurnModel:
    """The chosen recipe refitted on every labelled row (schema and categories from training)."""
    model = flat_model(fit.model)
    X, _ = design(data.rows, model.schema, model.categories)
    package = partial(package_table, model.schema, model.categories, options)
    return refit_all(fit, X, data.y, model.schema.categorical, options.train, package)


def design(
    rows: pd.DataFrame, schema: TableSchema, cats: dict[str, list[str]] | None = None
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Estimator inputs from raw rows; categories from these rows unless given."""
    prepared = prepare_table_rows(rows, schema)
    if cats is None:
        cats = {c: sorted(map(str, prepared[c].dropna().unique())) for c in schema.categorical}
    return align_inputs(prepared, schema.columns, cats), cats


def package_table(
    schema: TableSchema,
    cats: dict[str, list[str]],
    options: FlatOptions,
    estimator: Estimator,
    kind: ModelKind,
    calibrator: Calibrator,
) -> FlatChurnModel:
    """A fitted estimator and calibrator as the FlatChurnModel over the table's columns."""
    return FlatChurnModel(
        FeatureSet(),
        kind,
        estimator,
        calibrator,
        options.horizon_days,
        schema.columns,
        cats,
        schema=schema,
    )


def flat_model(model: ChurnModel) -> FlatChurnModel:
    """The model as the flat-table model it is."""
    assert isinstance(model, FlatChurnModel)
    return model
