"""API clients in the admin: made with a name and scopes (the key is shown once, in
the message after saving), revoked by an action; both need ``api.manage_apiclient``."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from api.models import ApiClient, Scope
from api.selectors import consumer_lags
from api.services.clients import MANAGE, api_client_create, api_client_revoke
from config.admin_base import StaffAdmin, acting_user


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiClient
        fields = ("name", "scopes")


@admin.register(ApiClient)
class ApiClientAdmin(StaffAdmin):
    form = ApiClientForm
    list_display = (
        "name",
        "key_prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
        "feed_lag",
    )
    list_filter = ("revoked_at",)
    readonly_fields = (
        "key_prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "feed_lag",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    @admin.display(description="Suppression feed applied")
    def feed_lag(self, client: ApiClient) -> str:
        """Per purpose: the entries after its applied cursor, and how long ago the oldest
        of them was recorded (an index range count each, no per-entry work)."""
        if not client.pk:
            return "-"
        lags = consumer_lags(client=client)
        if not lags:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "{}: {} entries behind, oldest {} s ago (cursor {} of {}, reported {})",
            (
                (
                    lag.position.purpose.slug,
                    lag.entries_behind,
                    round(lag.seconds_behind),
                    lag.position.cursor,
                    lag.head,
                    f"{lag.position.reported_at:%Y-%m-%d %H:%M} UTC",
                )
                for lag in lags
            ),
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # a client's scopes are its key's promise: revoke and make another

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoked clients stay, with their history

    def has_manage_apiclient_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    def save_model(self, request: HttpRequest, obj: ApiClient, form, change: bool) -> None:
        client, key = api_client_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            by=acting_user(request),
        )
        # The admin's log entry and message name the new client.
        obj.pk, obj.key_prefix = client.pk, client.key_prefix
        self.message_user(
            request,
            f"API key for {client.name}, shown this once (only its hash is kept): {key}",
            messages.WARNING,
        )

    @admin.action(
        description="Revoke (their keys are refused from now on)", permissions=["manage_apiclient"]
    )
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = sum(
            api_client_revoke(client=client, by=acting_user(request)) for client in queryset
        )
        self.message_user(request, f"{revoked} API clients revoked.")
