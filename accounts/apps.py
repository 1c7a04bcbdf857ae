from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Members and consent"

    def ready(self) -> None:
        from accounts.models import JurisdictionPolicy, Purpose, PurposeText
        from accounts.selectors import purposes_copy_clear

        # A change made in this process shows at once; other processes within
        # PURPOSES_COPY_SECONDS. A purpose's texts are in the copy too (member pages
        # word purposes from it), and kept page skeletons are keyed by that wording.
        for model in (Purpose, JurisdictionPolicy, PurposeText):
            post_save.connect(purposes_copy_clear, sender=model, dispatch_uid=f"copy-{model}")
            post_delete.connect(purposes_copy_clear, sender=model, dispatch_uid=f"del-{model}")
