from django.conf import settings
from django.db import models


class Scope(models.TextChoices):
    MEMBERS_WRITE = "members:write", "Create, update and erase members"
    PREFERENCES_READ = "preferences:read", "Read members' choices"
    PREFERENCES_WRITE = "preferences:write", "Record members' choices"
    SUPPRESSIONS_READ = "suppressions:read", "Follow the suppression feed"
    CAMPAIGNS_READ = "campaigns:read", "Read campaigns and their reach"


class ApiClient(models.Model):
    """A system that calls the API. Its key is shown once, when it is made: only the
    key's SHA-256 is kept (a key is 32 random bytes, so a plain hash is as good as a
    slow one), found by its public prefix."""

    name = models.CharField(max_length=120)
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("manage_apiclient", "Can create and revoke API clients")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix})"
