"""The console's menu: (label, URL name, permission needed to see the entry)."""

NAV: list[tuple[str, str, str]] = [
    ("Dashboard", "console:dashboard", "campaigns.view_campaign"),
    ("Campaigns", "console:campaigns", "campaigns.view_campaign"),
    ("New campaign", "console:campaign_new", "campaigns.add_campaign"),
    ("Approvals", "console:approvals", "campaigns.approve_campaign"),
    ("Notices", "console:notices", "campaigns.view_noticeversion"),
    ("Gates", "console:gates", "gates.view_gate"),
    ("Effectiveness", "console:effectiveness", "accounts.view_consentevent"),
    ("Audit trail", "console:audit", "audit.view_staffaction"),
]
