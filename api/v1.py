"""``/api/v1/``: the schema at ``openapi.json``, its docs page at ``docs`` (served from
this site's own static files), and the endpoints (one router per area, in
``api.endpoints``).

Every error is a JSON problem details document (RFC 9457), never an HTML page
(``api.base``, ``api.middleware``).
"""

from api.auth import ApiKey
from api.base import RenotifyAPI
from api.endpoints import campaigns, consumers, members, preferences, suppressions

api = RenotifyAPI(
    title="Renotify API",
    version="1",
    urls_namespace="api-v1",
    auth=ApiKey(),
    docs_url="/docs",
)
api.add_router("/campaigns", campaigns.router)
# Preferences first: a member's own paths (/members/{id}/choices, ...) must be matched
# before the members router's /members/{id}, whose id may hold "/".
api.add_router("/members", preferences.router)
api.add_router("/members", members.router)
api.add_router("/suppressions", suppressions.router)
api.add_router("/consumers", consumers.router)
