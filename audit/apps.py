from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Staff audit trail"

    def ready(self) -> None:
        from audit import signals  # noqa: F401  (sign-ins and role changes)
