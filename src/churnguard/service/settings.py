"""The service's own settings, read from ``Settings`` where it has them, else these defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from churnguard.config import Settings

MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    """Request limits and service behaviour.

    Attributes:
        max_clients_per_request: most clients one ``POST /api/v1/score`` may carry.
        max_body_bytes: largest request body accepted (413 beyond it).
        playbook_path: a YAML playbook replacing the packaged one (None: the packaged one).
        score_write_interval: seconds between the background writes of API scores.
        model_retry_seconds: while no model is loaded, try again this often (0: never).
        key_cache_seconds: an accepted API key is trusted this long without reading the store
            again, so a revoked key stops working within it (0: read the store every time).
    """

    max_clients_per_request: int = 100
    max_body_bytes: int = 2 * MiB
    playbook_path: Path | None = None
    score_write_interval: float = 0.5
    model_retry_seconds: float = 30.0
    key_cache_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceOptions:
        """The options ``settings`` carries (same names), defaults for the rest."""
        names = [f.name for f in dataclasses.fields(cls)]
        given = {n: getattr(settings, n) for n in names if getattr(settings, n, None) is not None}
        return cls(**given)

    def __post_init__(self) -> None:
        if self.max_clients_per_request < 1 or self.max_body_bytes < 1:
            raise ValueError("max_clients_per_request and max_body_bytes must be positive")
        if self.score_write_interval <= 0:
            raise ValueError("score_write_interval must be > 0")
        if self.model_retry_seconds < 0 or self.key_cache_seconds < 0:
            raise ValueError("model_retry_seconds and key_cache_seconds must be >= 0")
