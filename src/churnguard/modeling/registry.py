"""The one narrow wrapper around MLflow: runs, the pyfunc model, the registry and its aliases.

Nothing happens at import time. ``Registry`` points MLflow at one tracking URI (a local
``sqlite:///<home>/mlflow.db`` by default, artifacts under ``<home>/mlartifacts``; a server via
``MLFLOW_TRACKING_URI``). Model versions of the registered model ``churnguard`` carry two aliases:
``champion`` (what scoring and the service load) and ``challenger`` (the latest version that did
not become champion).

Runs say what they are: a name and a description (MLflow's run note) written by the caller, the
training data logged as a dataset input (``RunLog.dataset``), a description on each registered
version, and experiments tagged as custom-model development so the MLflow UI opens them on their
runs rather than on the GenAI traces page.

The registered model is an MLflow pyfunc: input is the features DataFrame (categorical columns as
strings), output the calibrated churn probability. It wraps the joblib-saved ``ChurnModel``, so
loading it needs the churnguard package importable (as it is in the service and in batch jobs).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import numpy as np
import pandas as pd  # loaded by MLflow anyway; the pyfunc's type hints need it
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage, Metric, Param, ViewType
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel, PythonModelContext

from churnguard.config import Settings
from churnguard.modeling.versions import (
    MODEL_NAME,
    RunRecord,
    VersionInfo,
    newest_first,
    version_info,
)

if TYPE_CHECKING:  # the model (LightGBM, scikit-learn) and matplotlib load where they are used
    from matplotlib.figure import Figure

    from churnguard.modeling.model import ChurnModel

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_KEY = "churn_model"
ARTIFACT_FILE = "churn_model.joblib"  # the joblib-saved ChurnModel, under the model's artifacts/
_PARAM_MAX = 6000  # MLflow's limit on a parameter value
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_RUNTIME_PACKAGES = ("numpy", "pandas", "scikit-learn", "lightgbm", "joblib", "mlflow")
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such model, or alias
RUN_NOTE = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)
EXPERIMENT_KIND = "mlflow.experimentKind"  # what the MLflow UI opens an experiment on
CUSTOM_MODELS = "custom_model_development"  # ... its runs (not the GenAI traces page)


class RegistryError(ValueError):
    """A registry lookup that cannot be satisfied (unknown version, no champion, ...)."""


class ChurnPyfunc(PythonModel):
    """MLflow pyfunc around a ChurnModel stored as a joblib artifact."""

    def load_context(self, context: PythonModelContext) -> None:
        import joblib

        self.model: ChurnModel = joblib.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        return self.model.predict_proba(model_input)


class RunLog:
    """Logging into one MLflow run (created by ``Registry.start_run``)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def params(self, params: Mapping[str, object]) -> None:
        """Log parameters; values are stringified and cut to MLflow's length limit."""
        items = [Param(k, str(v)[:_PARAM_MAX]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log metrics; NaN values (undefined, e.g. AUC of one class) are left out."""
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        items = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if not math.isnan(float(v))
        ]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start : start + 500])

    def tags(self, tags: Mapping[str, object]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def figure(self, figure: Figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def table(self, table: pd.DataFrame, path: str) -> None:
        self.client.log_text(self.run_id, table.to_csv(index=False), path)

    def dataset(
        self,
        frame: pd.DataFrame,
        name: str,
        source: str,
        targets: str | None = None,
        context: str = "training",
    ) -> str:
        """Log a table as the run's dataset input (schema, profile, digest; not its rows).

        Returns the dataset's digest. The run must be the active one (``Registry.start_run``).
        """
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.pandas_dataset import from_pandas

        # MLflow's hints on local sources, integers and time zones; its schema is inferred lazily,
        # when the input is logged (pandas 3 warns there about tz-aware columns' .values)
        digest = pandas_digest(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                data = from_pandas(frame, source, targets, name, digest)
            except MlflowException:  # a database URL: MLflow resolves paths and a few schemes
                where = CodeDatasetSource({"uri": source})
                data = from_pandas(frame, where, targets, name, digest)
            data.__dict__["schema"] = table_schema(frame)  # primes its cached_property
            mlflow.log_input(data, context=context)
        return str(data.digest)


def table_schema(frame: pd.DataFrame) -> Any:
    """MLflow's schema of a DataFrame (``mlflow.types.Schema``), as its ``PandasDataset`` infers
    it, without reading every value in Python: a column's type from its dtype, or from its
    distinct values when it holds objects; required when no value is missing (``isna``: None,
    NaN, NA, NaT, as MLflow's own test). MLflow's inference took 46 s of a 20k-client training.
    """
    from mlflow.types import ColSpec, Schema
    from mlflow.types.utils import _infer_schema  # what PandasDataset.schema calls

    specs: list[Any] = []
    for name, column in frame.items():
        few = column.drop_duplicates() if column.dtype.kind == "O" else column.iloc[:1]
        try:
            kind = _infer_schema(few.to_frame(name).reset_index(drop=True)).inputs[0].type
        except Exception:  # as PandasDataset: a table MLflow cannot type has no schema
            return None
        specs.append(ColSpec(kind, str(name), required=not bool(column.isna().any())))  # type: ignore[arg-type]
    return Schema(specs)


def pandas_digest(frame: pd.DataFrame) -> str:
    """MLflow's digest of a DataFrame (``compute_pandas_digest``: its first 10,000 rows' text
    and number columns, the row count, the column names), its text columns found column by column
    in C (``infer_dtype``): MLflow tests the type of every value in Python (6 s at 20k clients)."""
    from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

    head = frame.head(MAX_ROWS)
    text = [c for c, column in frame.items() if len(frame) == 0 or _all_text(column)]
    chosen = pd.Index(text).union(head.select_dtypes(include=[np.number]).columns)
    parts = [pd.util.hash_pandas_object(head[chosen]).values, np.int64(len(frame))]
    return str(get_normalized_md5_digest(parts + [str(x).encode() for x in frame.columns]))


def _all_text(column: pd.Series) -> bool:
    """Whether every value is a str (a missing value is not)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        used = column.cat.categories[np.unique(codes[codes >= 0])]
        return bool((codes >= 0).all()) and pd.api.types.infer_dtype(used) == "string"
    if column.dtype.kind != "O" or column.isna().any():  # pandas' str dtype: NaN is missing
        return False
    return pd.api.types.infer_dtype(column, skipna=False) == "string"


class Registry:
    """MLflow tracking and model registry for churnguard models."""

    def __init__(
        self, tracking_uri: str, artifact_root: Path | None = None, model_name: str = MODEL_NAME
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The registry named by settings; local stores keep artifacts under <home>/mlartifacts."""
        uri = settings.tracking_uri
        local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(uri, (settings.home / "mlartifacts").resolve() if local else None)

    # --- runs -----------------------------------------------------------------------------------

    @contextmanager
    def start_run(
        self, experiment: str, run_name: str | None = None, description: str = ""
    ) -> Iterator[RunLog]:
        """An MLflow run in the experiment (created if needed); marked FAILED on an exception.

        ``description`` (markdown) is the run's note, shown on its page in the MLflow UI.
        """
        self._use()
        experiment_id = self._experiment_id(experiment)
        tags = {RUN_NOTE: description} if description else None
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield RunLog(self.client, run.info.run_id)

    def _use(self) -> None:
        """Point MLflow's fluent API (log_model, load_model) at this store."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def _experiment_id(self, name: str) -> str:
        """The experiment's id (created if needed), tagged to open on its runs in the UI."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = self.artifact_root.as_uri() if self.artifact_root is not None else None
            return str(
                self.client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND: CUSTOM_MODELS}
                )
            )
        if found.tags.get(EXPERIMENT_KIND) != CUSTOM_MODELS:  # made by an older churnguard
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, CUSTOM_MODELS)
        return str(found.experiment_id)

    def experiment_id(self, run_id: str) -> str:
        """The id of the experiment a run belongs to."""
        return str(self.client.get_run(run_id).info.experiment_id)

    def log_model(
        self,
        run: RunLog,
        model: ChurnModel,
        input_example: pd.DataFrame,
        description: str = "",
    ) -> int:
        """Log the model as a pyfunc in the run, register it, and return the new version.

        ``description`` (markdown) is the registered version's description.
        """
        import joblib
        from mlflow.models import infer_signature

        example = input_example.astype({c: object for c in model.categories})
        signature = infer_signature(example, model.predict_proba(example))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ARTIFACT_FILE
            joblib.dump(model, path)
            with _quiet("mlflow"):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ChurnPyfunc(),
                    artifacts={ARTIFACT_KEY: str(path)},
                    signature=signature,
                    input_example=example,
                    registered_model_name=self.model_name,
                    pip_requirements=_pip_requirements(),
                )
        version = int(info.registered_model_version)
        self.client.set_model_version_tag(self.model_name, str(version), "kind", model.kind)
        if description:
            self.describe_version(version, description)
        return version

    def describe_version(self, version: int, description: str) -> None:
        """Set a registered version's description (markdown, shown in the MLflow UI)."""
        self.client.update_model_version(self.model_name, str(version), description=description)

    # --- registry -------------------------------------------------------------------------------

    def alias_version(self, alias: str) -> int | None:
        """The version an alias points to, or None when the model or the alias does not exist.

        Any other failure (an unreachable tracking server, say) raises: "no champion" must not
        be concluded from an error.
        """
        try:
            return int(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                return None
            raise

    def set_alias(self, alias: str, version: int) -> None:
        """Point alias at version (which must exist)."""
        self._check_version(version)
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        if self.alias_version(alias) is not None:
            self.client.delete_registered_model_alias(self.model_name, alias)

    def load_model(self, version: int) -> ChurnModel:
        """The ChurnModel of a registered version, read from its artifact.

        The joblib file the pyfunc wraps is read straight from the version's artifacts (in
        place when they are local files, else downloaded): the same object the pyfunc's
        ``load_context`` reads, without MLflow's pyfunc loader and its dependency checks.
        """
        from churnguard.modeling.model import ChurnModel

        self._check_version(version)
        self._use()  # a server's proxied artifacts (mlflow-artifacts:/) resolve through it
        uri = self.client.get_model_version_download_uri(self.model_name, str(version))
        model = _read_artifact(f"{uri.rstrip('/')}/artifacts/{ARTIFACT_FILE}")
        if not isinstance(model, ChurnModel):
            raise RegistryError(f"version {version} of {self.model_name} holds no ChurnModel")
        return model

    def versions(self) -> list[VersionInfo]:
        """Every version of the registered model, newest first, with aliases and run metrics.

        A few set-based calls whatever the number of versions: the model (aliases), its
        versions, and their runs in one search.
        """
        try:
            registered = self.client.get_registered_model(self.model_name)
        except MlflowException:
            return []
        aliases: dict[int, list[str]] = {}
        for alias, version in registered.aliases.items():
            aliases.setdefault(int(version), []).append(alias)
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        runs = self._runs({v.run_id for v in found if v.run_id})
        return newest_first(
            version_info(int(v.version), v.run_id, v.creation_timestamp, aliases, runs)
            for v in found
        )

    def _runs(self, run_ids: set[str]) -> dict[str, RunRecord]:
        """The runs (deleted ones too) by run id, in one search per 100 runs."""
        if not run_ids:
            return {}
        experiments = self.client.search_experiments(view_type=ViewType.ALL)
        ids = [e.experiment_id for e in experiments]
        wanted = sorted(run_ids)
        found: dict[str, RunRecord] = {}
        for start in range(0, len(wanted), 100):
            quoted = ", ".join(f"'{r}'" for r in wanted[start : start + 100])
            for run in self.client.search_runs(
                ids,
                f"attributes.run_id IN ({quoted})",
                run_view_type=ViewType.ALL,
                max_results=len(wanted),
            ):
                deleted = run.info.lifecycle_stage == LifecycleStage.DELETED
                found[run.info.run_id] = RunRecord(deleted, run.data.metrics, run.data.params)
        return found

    def version_info(self, version: int) -> VersionInfo:
        """One version's aliases and run metrics."""
        found = [v for v in self.versions() if v.version == version]
        if not found:
            raise RegistryError(self._unknown(version))
        return found[0]

    def _check_version(self, version: int) -> None:
        try:
            self.client.get_model_version(self.model_name, str(version))
        except MlflowException:
            raise RegistryError(self._unknown(version)) from None

    def _unknown(self, version: int) -> str:
        return (
            f"model {self.model_name!r} has no version {version} in {self.tracking_uri} "
            "(list them with `churnguard models`)"
        )


def _read_artifact(uri: str) -> Any:
    """The object in a joblib artifact: read in place from a local file, else downloaded."""
    import joblib

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return joblib.load(url2pathname(parsed.path))
    from mlflow.artifacts import download_artifacts

    with tempfile.TemporaryDirectory() as tmp, _quiet("mlflow"):
        return joblib.load(download_artifacts(artifact_uri=uri, dst_path=tmp))


def _pip_requirements() -> list[str]:
    """Pinned runtime requirements of the pyfunc (saves MLflow inferring them in a subprocess)."""
    pins = []
    for name in _RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hide MLflow's info/warning chatter and progress bars (errors stay) around one call."""
    log = logging.getLogger(name)
    level, bar = log.level, os.environ.get(_PROGRESS_BAR)
    log.setLevel(logging.ERROR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        log.setLevel(level)
        if bar is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = bar
