from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Notices and campaigns"

    def ready(self) -> None:
        from campaigns import webhooks  # noqa: F401  (connects the tracking receiver)
