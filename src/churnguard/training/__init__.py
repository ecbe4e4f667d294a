"""One training pipeline for CRM histories and flat tables, tracked in MLflow."""
