"""Settings: one object, read once at the edge (CLI, service) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything churnguard can be configured with; environment variable prefix CHURNGUARD_."""

    model_config = SettingsConfigDict(env_prefix="CHURNGUARD_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".churnguard"),
        description="Data folder for all local state: demo data, MLflow store, score store, keys.",
    )
    horizon_days: int = Field(default=90, gt=0, description="Churn label horizon in days.")
    grace_days: int = Field(
        default=30, ge=0, description="A renewal gap up to this many days is not churn."
    )
    seed: int = Field(default=7, description="Random seed for simulation and training.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CHURNGUARD_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.",
    )
    database_url: str | None = Field(
        default=None, description="Score store SQLAlchemy URL; default sqlite:///<home>/scores.db."
    )
    models_dir: Path = Field(
        default=Path("models"), description="Last-known-good copy of the champion model."
    )

    @property
    def demo_data_dir(self) -> Path:
        return self.home / "demo"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def score_store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'scores.db').resolve()}"
