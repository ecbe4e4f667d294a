"""What the running service holds: the score store, its writer, metrics and the current scorer.

The scorer is swapped whole: ``ServiceState.scorer`` is assigned the new ``Scorer`` in one step,
so a request that has taken the old one finishes with it and no request ever sees half a model.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from churnguard.config import Settings
from churnguard.service.auth import KeyChecker
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.writer import ScoreWriter
from churnguard.store.scores import ScoreStore

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

logger = logging.getLogger(__name__)

_URL_SECRET = re.compile(r"(//[^/@\s:]*):[^/@\s]*@")  # scheme://user:password@host


class ModelUnavailableError(RuntimeError):
    """No model could be loaded (the message says why)."""


@dataclass
class ServiceState:
    """The service's long-lived objects, kept on ``app.state.service``."""

    settings: Settings
    store: ScoreStore
    writer: ScoreWriter
    metrics: ServiceMetrics
    keys: KeyChecker
    scorer: Scorer | None = None
    unavailable: str = "the model has not been loaded yet"
    _loading: threading.Lock = field(default_factory=threading.Lock)

    def load_model(self) -> tuple[str | None, str]:
        """Load the current champion and serve it; returns (previous version, new version).

        Raises:
            ModelUnavailableError: no model could be loaded; the one served (if any) stays.
        """
        with self._loading:  # one load at a time; requests go on with the current scorer
            previous = self.scorer
            try:
                scorer = load_scorer(self.settings)
            except Exception as exc:
                reason = f"no model could be loaded: {_redact(str(exc)) or type(exc).__name__}"
                logger.warning("%s", reason, exc_info=logger.isEnabledFor(logging.DEBUG))
                if previous is None:
                    self.unavailable = reason
                raise ModelUnavailableError(reason) from exc
            self.scorer = scorer  # the swap: one assignment
            self.metrics.set_model(scorer.version, scorer.model.kind, model_source(scorer))
            _settle_heap()
        old = previous.version if previous is not None else None
        logger.info("serving model version %s (was %s)", scorer.version, old or "none")
        return old, scorer.version

    def try_load_model(self) -> bool:
        """``load_model`` that reports failure as False (start-up and retries)."""
        try:
            self.load_model()
        except ModelUnavailableError:
            return False
        return True


def load_scorer(settings: Settings) -> Scorer:
    """The champion's scorer: from the registry, else the local last-known-good copy."""
    from churnguard.scoring.scorer import load_scorer as load  # imports MLflow: only when needed

    return load(settings)


def model_source(scorer: Scorer) -> str:
    """Where the scorer's model came from: "registry", or "local" (the last-known-good copy)."""
    return "local" if scorer.version.startswith("local") else "registry"


def _settle_heap() -> None:
    """Collect the previous model's garbage, then freeze what is left (the model and imports).

    Frozen objects are skipped by every later collection, which keeps the collector's pauses,
    and with them the latency tail, short while serving.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _redact(text: str) -> str:
    """A message without the password of any URL in it."""
    return _URL_SECRET.sub(r"\1:***@", text)
