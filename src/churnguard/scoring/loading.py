"""Loading a scorer: the registry's champion, or the local last-known-good copy when it has none."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from churnguard.config import Settings
from churnguard.modeling.model import ChurnModel, load_local_model, load_model_card
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer

logger = logging.getLogger(__name__)

_PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class NoModelError(FileNotFoundError):
    """Neither the registry's champion nor a local copy of a model could be loaded."""


def load_scorer(settings: Settings) -> Scorer:
    """A Scorer for the registry's champion, or the local last-known-good copy when it has none.

    The playbook is ``settings.playbook_path`` when set, else the packaged one; the risk bands
    are ``settings.risk_bands``.

    The version reads "3" for registry version 3, "local:3" for the local copy of version 3.

    Raises:
        NoModelError: neither the registry nor settings.models_dir holds a model.
    """
    model, version = _champion(settings)
    playbook = load_playbook(settings.playbook_path, feature_set=model.feature_set)
    return Scorer(model, version, playbook, thresholds=settings.risk_bands)


def _champion(settings: Settings) -> tuple[ChurnModel, str]:
    """The champion and its version string: from the registry, else from the local copy."""
    from churnguard.modeling.registry import CHAMPION, Registry  # imports MLflow: only when needed

    try:
        registry = Registry.from_settings(settings)
        with impatient():  # fail fast on an unreachable server, then fall back below
            registry.client.search_registered_models(max_results=1)
        number = registry.alias_version(CHAMPION)
        if number is not None:
            model = registry.load_model(number)
            logger.info(
                "scoring with %s version %s from %s", CHAMPION, number, settings.tracking_uri
            )
            return model, str(number)
        why = f"the registry at {settings.tracking_uri} has no {CHAMPION}"
    except Exception as exc:  # any registry failure: fall back to the last-known-good copy
        why = f"the registry at {settings.tracking_uri} failed: {_first_line(exc)}"
    try:
        model = load_local_model(settings.models_dir)
    except FileNotFoundError:
        raise NoModelError(
            f"no model to score with: {why}, and there is no local copy in {settings.models_dir}; "
            "train a model first: churnguard train --data <folder or database URL>"
        ) from None
    card = load_model_card(settings.models_dir)
    version = f"local:{card['version']}" if card.get("version") is not None else "local"
    logger.warning("%s; scoring with the local copy in %s (%s)", why, settings.models_dir, version)
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
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__: Sequence[str] = ("NoModelError", "impatient", "load_scorer")
