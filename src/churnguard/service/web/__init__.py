"""The account managers' dashboard: server-rendered pages served by the service's app.

``router`` holds the pages (sign-in, my clients, a client, the portfolio) and the stylesheet;
its lifespan, run after the service's, opens the sessions table and the CRM data cache.
"""

from churnguard.service.web.routes import router

__all__ = ["router"]
