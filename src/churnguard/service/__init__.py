"""The churnguard HTTP service: CRM scoring API, clients' scores, health and metrics."""

from churnguard.service.app import create_app

__all__ = ["create_app"]
