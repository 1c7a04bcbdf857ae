"""API clients in the admin: made with a name and scopes (the key is shown once, in
the message after saving), revoked by an action; both need ``api.manage_apiclient``.
Their webhook endpoints likewise (the signing secret shown once), and each webhook
delivery with its attempts, replayed with ``api.replay_webhookdelivery``."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from api.models import ApiClient, Scope, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from api.selectors import consumer_lags
from api.services.clients import MANAGE, api_client_create, api_client_revoke
from api.services.webhooks import (
    REPLAY,
    EndpointRefused,
    webhook_deliveries_replay,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
    webhook_url_check,
)
from config.admin_base import (
    EstimatedCountPaginator,
    ReadOnlyAdmin,
    ReadOnlyInline,
    StaffAdmin,
    acting_user,
)
from config.ratelimit import rate_parse


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiClient
        fields = ("name", "scopes", "rate")

    def clean_rate(self) -> str:
        rate = self.cleaned_data["rate"].strip()
        try:
            rate and rate_parse(rate)
        except ImproperlyConfigured as exc:
            raise forms.ValidationError(str(exc)) from None
        return rate


@admin.register(ApiClient)
class ApiClientAdmin(StaffAdmin):
    form = ApiClientForm
    list_display = (
        "name",
        "key_prefix",
        "scopes",
        "rate",
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
            rate=form.cleaned_data["rate"],
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


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("client", "url")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            webhook_url_check(url)
        except EndpointRefused as refused:
            raise forms.ValidationError(str(refused)) from refused
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(StaffAdmin):
    """A client's endpoints: made with ``api.manage_apiclient`` (the signing secret is
    shown once, in the message after saving), never edited, deactivated by an action."""

    form = WebhookEndpointForm
    list_display = ("url", "client", "active", "after_seq", "created_at", "created_by")
    list_filter = ("active", "client")
    list_select_related = ("client", "created_by")
    readonly_fields = ("active", "after_seq", "created_at", "created_by")
    actions = ["deactivate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the receiver checks with the secret made for this URL: make another

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # its deliveries and their attempts stay

    def has_manage_apiclient_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        endpoint, secret = webhook_endpoint_create(
            client=form.cleaned_data["client"],
            url=form.cleaned_data["url"],
            by=acting_user(request),
        )
        obj.pk = endpoint.pk  # the admin's log entry and message name the new endpoint
        self.message_user(
            request,
            f"Signing secret for {endpoint.url}, shown this once: {secret}",
            messages.WARNING,
        )

    @admin.action(
        description="Deactivate (nothing more is sent to them)", permissions=["manage_apiclient"]
    )
    def deactivate(self, request: HttpRequest, queryset) -> None:
        count = sum(
            webhook_endpoint_deactivate(endpoint=endpoint, by=acting_user(request))
            for endpoint in queryset
        )
        self.message_user(request, f"{count} webhook endpoints deactivated.")


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "error", "duration_ms")

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("api.view_webhookdelivery")  # part of the delivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Each event sent to each endpoint, its attempts below it; parked or delivered ones
    can be replayed (``api.replay_webhookdelivery``)."""

    list_display = (
        "event_type",
        "event_seq",
        "endpoint",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    list_filter = ("state", "event_type", "endpoint")
    list_select_related = ("endpoint",)
    fields = (*list_display, "payload")
    inlines = [WebhookAttemptInline]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["replay"]

    def has_replay_webhookdelivery_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REPLAY)

    @admin.action(
        description="Replay (parked or delivered ones: sent again now)",
        permissions=["replay_webhookdelivery"],
    )
    def replay(self, request: HttpRequest, queryset) -> None:
        count = webhook_deliveries_replay(deliveries=queryset, by=acting_user(request))
        self.message_user(request, f"{count} webhook deliveries will be sent again now.")
