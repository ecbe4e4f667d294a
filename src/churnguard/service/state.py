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
from churnguard.store.database import StoreUnavailableError
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
    store_made: bool = False  # the store's tables exist: made at start, or once it answers
    _store_down: bool = False  # the last attempt to make them failed (logged once)
    _loading: threading.Lock = field(default_factory=threading.Lock)
    _making: threading.Lock = field(default_factory=threading.Lock)

    def make_store(self) -> bool:
        """Create the store's missing tables; False (logged once) while its database is down."""
        with self._making:  # one at a time: concurrent CREATE TABLEs collide on PostgreSQL
            if self.store_made:
                return True
            try:
                self.store.create()
            except StoreUnavailableError as exc:
                if not self._store_down:
                    logger.warning("%s; the service waits for it", _redact(str(exc)))
                self._store_down = True
                return False
            if self._store_down:
                logger.info("the score store answers: its tables are made")
            self.store_made, self._store_down = True, False
            return True

    def check_store(self) -> None:
        """Raise ``StoreUnavailableError`` unless the store's tables are made and it answers."""
        if not self.make_store():
            raise StoreUnavailableError("the score store's database does not answer")
        self.store.ping()

    def load_model(self) -> tuple[str | None, str]:
        """Load the current champion and serve it; returns (previous version, new version).

        While a model is served, a registry that fails is an error, not a reason to fall back
        to the local copy: the model served stays, and the error says what failed.

        Raises:
            ModelUnavailableError: no model could be loaded; the one served (if any) stays.
        """
        from churnguard.scoring.loading import ModelLoadError, load_scorer  # pandas, the model

        with self._loading:  # one load at a time; requests go on with the current scorer
            previous = self.scorer
            try:
                scorer = load_scorer(self.settings, fallback=previous is None)
            except Exception as exc:  # a ModelLoadError names the step; anything else its type
                why = str(exc) if isinstance(exc, ModelLoadError) else _described(exc)
                reason = _redact(f"no model could be loaded: {why}")
                if previous is not None:
                    reason += f"; still serving version {previous.version}"
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


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), else its type."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _described(exc: BaseException) -> str:
    """An unexpected error in one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {_first_line(exc)}"
