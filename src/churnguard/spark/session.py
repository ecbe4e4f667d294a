"""A Spark session for churnguard's jobs: checks for Java and pyspark, settings, progress.

The workers run this interpreter (``spark.pyspark.python``), so they import the same churnguard,
pandas and LightGBM as the driver. Time stamps are read and written in UTC
(``spark.sql.session.timeZone``), the rule of the CRM data contract.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# pyspark 4.3 warns on every import under pandas 3; churnguard's use is pinned by tests/spark
PANDAS_WARNING = "PySpark does not yet fully support pandas"
_WORKER_WARNINGS = f"ignore:{PANDAS_WARNING}:FutureWarning"
DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
    "spark.sql.execution.arrow.pyspark.enabled": "true",  # createDataFrame from pandas
    "spark.executorEnv.OMP_NUM_THREADS": "1",  # a task is one core: no OpenMP oversubscription
    "spark.ui.showConsoleProgress": "false",  # churnguard prints its own (``progress``)
}


class SparkUnavailableError(RuntimeError):
    """Spark cannot start here: pyspark or Java is missing; the message says what to install."""


def quiet_pandas_warning() -> None:
    """Hide pyspark's pandas-3 FutureWarning in this process (workers: ``PYTHONWARNINGS``)."""
    warnings.filterwarnings("ignore", message=PANDAS_WARNING, category=FutureWarning)


def check_spark() -> None:
    """Raise SparkUnavailableError naming what to install when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailableError(
            "pyspark is not installed: install churnguard's spark extra "
            "(pip install 'churnguard[spark]', or uv sync --extra spark)"
        ) from None
    if java_missing():
        raise SparkUnavailableError(
            "Spark needs a Java runtime (17 or later) and none was found (no JAVA_HOME, no java "
            "on the PATH): on Debian/Ubuntu run scripts/java.sh (apt-get install "
            "openjdk-17-jre-headless), or set JAVA_HOME"
        )


def java_missing() -> bool:
    """True when neither JAVA_HOME nor the PATH holds a java executable."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return False
    return shutil.which("java") is None


def start_session(
    master: str | None = None, conf: Sequence[str] = (), app_name: str = "churnguard"
) -> SparkSession:
    """A Spark session (``master`` None: spark-submit's, else local[*]) with churnguard's settings.

    churnguard's defaults (``DEFAULTS``; the workers run this interpreter) apply where neither
    spark-submit nor spark-defaults.conf set a value; ``conf`` (``key=value``) overrides all.
    """
    check_spark()
    quiet_pandas_warning()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines on every shutdown
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    os.environ["PYTHONWARNINGS"] = _with_worker_filter(os.environ.get("PYTHONWARNINGS", ""))
    present = SparkConf(loadDefaults=False)
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # under spark-submit: its JVM holds its settings
        SparkContext._ensure_initialized()
        present = SparkConf()
    defaults = {
        **DEFAULTS,
        "spark.pyspark.python": sys.executable,
        "spark.executorEnv.PYTHONWARNINGS": _WORKER_WARNINGS,
    }
    settings = {k: v for k, v in defaults.items() if not present.contains(k)}
    settings.update(parse_conf(conf))  # --spark-conf wins over everything
    if "spark.pyspark.python" in settings:  # pyspark reads the workers' Python from the variable
        os.environ.setdefault("PYSPARK_PYTHON", settings["spark.pyspark.python"])
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _with_worker_filter(current: str) -> str:
    """PYTHONWARNINGS with the pandas-3 filter added (local workers inherit the environment)."""
    return (
        current
        if _WORKER_WARNINGS in current
        else ",".join(filter(None, [current, _WORKER_WARNINGS]))
    )


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` settings as a dict; raises ValueError naming a malformed one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--spark-conf takes key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@contextmanager
def progress(
    spark: SparkSession, what: str, out: TextIO | None = None, every: float = 5.0
) -> Iterator[None]:
    """Print the Spark job's progress (stages and tasks done) every few seconds while inside."""
    out = out or sys.stderr
    done = threading.Event()
    thread = threading.Thread(target=_report, args=(spark, what, out, every, done), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _report(
    spark: SparkSession, what: str, out: TextIO, every: float, done: threading.Event
) -> None:
    tracker = spark.sparkContext.statusTracker()
    last = ""
    while not done.wait(every):
        line = _progress_line(tracker, what)
        if line and line != last:
            print(line, file=out, flush=True)
            last = line


def _progress_line(tracker: object, what: str) -> str:
    """'scoring: stage 3: 5/16 tasks (2 running)' for each active stage."""
    parts = []
    for stage_id in tracker.getActiveStageIds():  # type: ignore[attr-defined]
        info = tracker.getStageInfo(stage_id)  # type: ignore[attr-defined]
        if info is not None:
            parts.append(
                f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks"
                f" ({info.numActiveTasks} running)"
            )
    return f"{what}: " + "; ".join(parts) if parts else ""
