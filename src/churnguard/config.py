"""Settings: one object, read once at the edge (CLI, service) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
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
    mlflow_ui_url: str | None = Field(
        default=None,
        description="Base URL of the MLflow UI (e.g. http://127.0.0.1:5000), for links to a "
        "model's training run; no links when unset.",
    )
    database_url: str | None = Field(
        default=None, description="Score store SQLAlchemy URL; default sqlite:///<home>/scores.db."
    )
    models_dir: Path = Field(
        default=Path("models"), description="Last-known-good copy of the champion model."
    )
    crm_data: str | None = Field(
        default=None,
        description="CRM data the dashboard reads (client timelines, renewal dates, portfolio): "
        "a folder or SQLAlchemy URL; default <home>/demo.",
    )
    crm_mapping: Path | None = Field(
        default=None, description="YAML file renaming crm_data's tables, columns and values."
    )

    currency: str = Field(
        default="USD",
        min_length=3,
        max_length=3,
        description="ISO 4217 code of the CRM's money amounts, shown on the dashboard and in "
        "alerts.",
    )
    risk_bands: tuple[float, float] = Field(
        default=(0.1, 0.3),
        description='Risk band thresholds: "low" below the first, "high" from the second on.',
    )

    # The service (``churnguard serve``).
    max_clients_per_request: int = Field(
        default=100, ge=1, description="Most clients one POST /api/v1/score may carry."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1, description="Largest request body accepted (413 beyond)."
    )
    max_scoring_in_flight: int = Field(
        default=32,
        ge=1,
        description="Most POST /api/v1/score requests handled at once; past it, 503 with "
        "Retry-After at once (health checks and other endpoints are not counted).",
    )
    max_clock_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A score request's as_of may lie this far past the server's clock (a CRM's "
        "clock runs a little ahead); further in the future it is refused with 422.",
    )
    playbook_path: Path | None = Field(
        default=None, description="A YAML playbook replacing the packaged one."
    )
    model_retry_seconds: float = Field(
        default=30.0, ge=0, description="While no model is loaded, retry this often (0: never)."
    )
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, description="How long a dashboard sign-in lasts."
    )
    dashboard_secure_cookies: bool = Field(
        default=True,
        description="Mark dashboard cookies Secure (with the __Host- prefix). Browsers accept "
        "them over plain http on localhost and 127.0.0.1 only; serve over https elsewhere, or "
        "set False for plain http on another address (sign-in loops otherwise).",
    )
    key_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="An accepted API key is trusted this long without reading the store again, "
        "so a revoked key stops working within it (0: read the store every time).",
    )

    # Alerts after each scoring run (``churnguard alerts``): SMTP and/or a signed webhook.
    alert_rise: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="Alert when a client's probability rose more than this since its last score.",
    )
    alert_hysteresis: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="After a high-risk alert, a client alerts again only once it has fallen this "
        "far below the high band's threshold and come back.",
    )
    alert_review_days: int = Field(
        default=90,
        gt=0,
        description="Remind a manager of a client with no account review for this long.",
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where the dashboard is served; the links in alerts start with it.",
    )
    alert_recipients: dict[str, str] = Field(
        default_factory=dict,
        description='Account manager -> email address, as JSON: {"Maya Khan": "maya@example.com"}.',
    )
    alert_fallback_recipient: str | None = Field(
        default=None,
        description="Email address for unassigned clients and managers not in alert_recipients.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for alert emails.")
    smtp_port: int = Field(default=587, gt=0, lt=65536, description="SMTP server port.")
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS."
    )
    smtp_user: str | None = Field(default=None, description="SMTP user name, if it needs one.")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(default="churnguard@localhost", description="Sender of alert emails.")
    webhook_url: str | None = Field(
        default=None, description="URL that gets each digest as JSON (Slack-compatible text)."
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Key of the webhook's HMAC-SHA256 signature (X-Churnguard-Signature header).",
    )

    @field_validator("risk_bands")
    @classmethod
    def _ascending(cls, bands: tuple[float, float]) -> tuple[float, float]:
        if not 0 < bands[0] < bands[1] < 1:
            raise ValueError(f"risk_bands must be two ascending numbers in (0, 1), got {bands}")
        return bands

    @property
    def demo_data_dir(self) -> Path:
        return self.home / "demo"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def score_store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'scores.db').resolve()}"

    @property
    def crm_source(self) -> str | Path:
        return self.crm_data or self.demo_data_dir
