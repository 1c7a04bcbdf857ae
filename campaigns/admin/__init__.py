"""The privacy team's console for notices, campaigns and deliveries.

Django's autodiscover imports this package: importing each module registers its admins.
"""

from campaigns.admin import campaigns, deliveries, notices, reports

__all__ = ["campaigns", "deliveries", "notices", "reports"]
