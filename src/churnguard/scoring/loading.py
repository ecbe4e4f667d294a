"""Loading a scorer: the registry's champion, or the local last-known-good copy when it has none.

The one place that says where a model comes from: the CLI and the service both load here; a
failure names its step (``ModelLoadError.step``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from churnguard.config import Settings
from churnguard.modeling.model import (
    ChecksumMismatchError,
    ChurnModel,
    load_local_model,
    load_model_card,
)
from churnguard.modeling.table import FlatChurnModel
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer

logger = logging.getLogger(__name__)

_PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class ModelLoadError(ValueError):
    """A model could not be loaded; ``step`` names what failed: "registry", "artifact",
    "checksum", "local copy", "model" (there is none) or "flat table" (the champion scores
    a flat table's rows, not CRM records)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


class NoModelError(ModelLoadError, FileNotFoundError):
    """Neither the registry's champion nor a local copy of a model could be loaded."""

    def __init__(self, message: str) -> None:
        super().__init__("model", message)


def load_scorer(settings: Settings, fallback: bool = True) -> Scorer:
    """A Scorer for the registry's champion, or the local last-known-good copy when it has none.

    The local copy is used when the registry has no champion, or, with ``fallback``, when the
    registry fails (its reason is logged). The playbook is ``settings.playbook_path`` when set,
    else the packaged one; the risk bands are ``settings.risk_bands``.

    The version reads "3" for registry version 3, "local:3" for the local copy of version 3.

    Raises:
        ModelLoadError: nothing could be loaded, naming the step that failed (``NoModelError``:
            neither the registry nor settings.models_dir holds a model).
    """
    model, version = _champion(settings, fallback)
    if isinstance(model, FlatChurnModel):
        raise ModelLoadError(
            "flat table",
            f"the champion (version {version}) was trained on a flat table (churnguard train "
            "--table): it scores that table's rows through its MLflow pyfunc, not CRM records. "
            "Train on CRM data (churnguard train --data) and promote that version to score here",
        )
    playbook = load_playbook(settings.playbook_path, feature_set=model.feature_set)
    return Scorer(model, version, playbook, thresholds=settings.risk_bands)


def _champion(settings: Settings, fallback: bool) -> tuple[ChurnModel, str]:
    """The champion and its version string: from the registry, else from the local copy."""
    try:
        found = _registry_champion(settings)
        why = f"the registry at {settings.tracking_uri} has no champion"
    except ModelLoadError as exc:
        if not fallback:
            raise
        found, why = None, str(exc)
    return found if found is not None else _local_copy(settings, why)


def _registry_champion(settings: Settings) -> tuple[ChurnModel, str] | None:
    """The registry's champion and its version (None: the registry has no champion)."""
    from churnguard.modeling.registry import CHAMPION, Registry  # imports MLflow: only when needed

    uri = settings.tracking_uri
    try:
        registry = Registry.from_settings(settings)
        with impatient():  # an unreachable server fails in seconds, not minutes
            number = registry.alias_version(CHAMPION)
    except Exception as exc:  # any registry failure: the caller may fall back to the local copy
        raise ModelLoadError(
            "registry", f"the registry at {uri} failed: {_first_line(exc)}"
        ) from exc
    if number is None:
        return None
    try:
        model = registry.load_model(number)
    except Exception as exc:
        raise ModelLoadError(
            "artifact",
            f"the {CHAMPION}, version {number}, could not be loaded from the registry at {uri} "
            f"(its artifacts): {_first_line(exc)}",
        ) from exc
    logger.info("scoring with %s version %s from %s", CHAMPION, number, uri)
    return model, str(number)


def _local_copy(settings: Settings, why: str) -> tuple[ChurnModel, str]:
    """The local last-known-good copy and its version; ``why`` says why it is needed."""
    where = settings.models_dir
    try:
        model = load_local_model(where)
        card = load_model_card(where)
    except FileNotFoundError:
        raise NoModelError(
            f"no model to score with: {why}, and there is no local copy in {where}; "
            "train a model first: churnguard train --data <folder or database URL>"
        ) from None
    except ChecksumMismatchError as exc:
        raise ModelLoadError("checksum", f"{why}, and the local copy: {exc}") from exc
    except Exception as exc:  # a corrupt or foreign file: unpickling fails any way it likes
        raise ModelLoadError(
            "local copy",
            f"{why}, and the local copy in {where} could not be read "
            f"({type(exc).__name__}: {_first_line(exc)})",
        ) from exc
    version = f"local:{card['version']}" if card.get("version") is not None else "local"
    logger.warning("%s; scoring with the local copy in %s (%s)", why, where, version)
    return model, version


@contextmanager
def impatient() -> Iterator[None]:
    """Few HTTP retries and a short timeout for MLflow calls inside, unless the user set them.

    With MLflow's defaults an unreachable server is retried for about four minutes before the
    call fails; a scorer starting up should fall back to its local copy well before that.
    """
    added = {k: v for k, v in _PROBE_HTTP.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), else its type."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__: Sequence[str] = ("ModelLoadError", "NoModelError", "impatient", "load_scorer")
