"""The console's menu: (label, URL name, permission needed to see the entry)."""

NAV: list[tuple[str, str, str]] = [
    ("Audit trail", "console:audit", "audit.view_staffaction"),
]
