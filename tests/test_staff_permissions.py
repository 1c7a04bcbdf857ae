"""Every staff action and custom admin page needs its own permission.

The cases are enumerated from the admin site itself (every registered admin's actions,
every URL its ``get_urls`` adds, the campaign page's buttons, and the project's own
pages under /admin/), so an action or page added later without a case here fails
``test_every_admin_action_and_custom_page_has_a_case``. Each case runs against four
staff members: one with no permissions, one who may only view, an editor (view, add,
change) and an approver/operator (view and the custom permissions). A refusal is
checked by its HTTP answer, its error message, and by nothing having changed: rows,
emails sent, and what a sender would send afterwards.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse
from django.utils import timezone

from accounts.models import Source
from accounts.permissions import PermissionRefused
from accounts.selectors import suppression_feed_head
from accounts.services import members, policies
from api.models import WebhookDelivery, WebhookState
from api.services.clients import api_client_create, api_client_revoke
from api.services.webhooks import (
    webhook_deliveries_replay,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
)
from campaigns.admin.campaigns import CAMPAIGN_ACTIONS
from campaigns.models import (
    Campaign,
    CampaignState,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeVersion,
    ObjectionReceipt,
    ReceiptStatus,
)
from campaigns.services import erasure, lifecycle, notices, receipts, reconcile
from campaigns.services.sending import campaign_send_chunk
from config.admin_base import StaffAdmin
from gates import services as gates
from tests.factories import MemberFactory, ai_training, campaign, notice_version
from tests.gates_helpers import told_place

pytestmark = pytest.mark.django_db

ROLES = ("nobody", "viewer", "editor", "approver")
OUR_APPS = ("accounts", "api", "campaigns")
STANDARD_VIEWS = ("changelist", "add", "history", "delete", "change")
# Django's own pages of the admin site (index, login...): none of them is ours.
DJANGO_SITE_PAGES = {
    "index",
    "login",
    "logout",
    "password_change",
    "password_change_done",
    "autocomplete",
    "jsi18n",
    "view_on_site",
    "app_list",
}


# --- What the admin offers ------------------------------------------------------------


def discovered() -> set[str]:
    """Every action, custom admin URL and campaign button, as case keys."""
    found = set()
    for model, model_admin in admin.site._registry.items():
        label, prefix = model._meta.label_lower, f"{model._meta.app_label}_{model._meta.model_name}"
        found |= {f"action {label} {name}" for _f, name, _d in model_admin._get_base_actions()}
        standard = {f"{prefix}_{view}" for view in STANDARD_VIEWS}
        custom = [p.name for p in model_admin.get_urls() if p.name and p.name not in standard]
        found |= {f"url admin:{name}" for name in custom}
    site_pages = {p.name for p in admin.site.get_urls() if isinstance(p, URLPattern) and p.name}
    found |= {f"url admin:{name}" for name in site_pages - DJANGO_SITE_PAGES}
    found |= {
        f"url {p.name}"
        for p in get_resolver().url_patterns
        if isinstance(p, URLPattern) and str(p.pattern).startswith("admin/")
    } - {"url admin_login"}  # sends to the console's sign-in (tests/test_staff_two_factor.py)
    found |= {f"button {name}" for name, *_ in CAMPAIGN_ACTIONS}
    return found


@dataclass
class Case:
    """One action or page. ``perms``: what it needs (None: the admin refuses everyone);
    ``gate``: the permission without which the page itself answers 403."""

    perms: tuple[str, ...] | None
    gate: str
    setup: Callable[["World"], dict]
    run: Callable[[Client, dict], object]
    took_effect: Callable[[dict, object], bool]
    allowed_status: int = 302
    refused_status: int = 302  # with the gate: an error message on the page
    sender: Callable[[dict], int] | None = None  # emails a worker sends afterwards


@dataclass
class World:
    users: dict
    settings: object
    tmp_path: object
    extra: dict = field(default_factory=dict)


def post_action(changelist: str, action: str, key: str = "obj"):
    def run(client, objs):
        return client.post(
            reverse(f"admin:{changelist}_changelist"),
            {"action": action, "_selected_action": [objs[key].pk], "post": "yes"},
        )

    return run


def reload(obj):
    return type(obj).objects.filter(pk=obj.pk).first()


# Setups ---------------------------------------------------------------------------------


def bounced_member(world):
    return {"obj": MemberFactory(email_status="bounced")}


def delivery_in(status):
    def setup(world):
        c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
        return {"obj": Delivery.objects.create(campaign=c, member=MemberFactory(), status=status)}

    return setup


def failed_receipt(world):
    return {"obj": ObjectionReceipt.objects.create(consent_event_id=1, status=ReceiptStatus.FAILED)}


def a_version(world):
    return {"obj": notice_version()}


def campaign_in(state, *, approved=False):
    """A campaign in ``state``, last edited (and, if ``approved``, approved) by a writer
    who is none of the four, so the four-eyes rule never decides a case."""

    def setup(world):
        writer = get_user_model().objects.create_user("writer", is_staff=True)
        fields = {"approved_by": writer, "starts_at": timezone.now()} if approved else {}
        return {"obj": campaign(state=state, last_edited_by=writer, **fields)}

    return setup


def outbox_message(world):
    world.settings.EMAIL_BACKEND = "config.mail.OutboxBackend"
    world.settings.EMAIL_FILE_PATH = str(world.tmp_path / "outbox")
    mail.EmailMessage("Notice", "Your link: https://x/n/abc/", to=["ada@example.com"]).send()
    [path] = (world.tmp_path / "outbox").glob("*.eml")
    return {"name": path.name}


def sent_campaign(world):
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    Delivery.objects.create(campaign=c, member=MemberFactory(), status=DeliveryStatus.BOUNCED)
    return {"obj": c}


def press(button):
    def run(client, objs):
        return client.post(reverse("admin:campaigns_campaign_do", args=[objs["obj"].pk, button]))

    return run


def now_in(state):
    return lambda objs, _response: reload(objs["obj"]).state == state


def get(name, *args):
    def run(client, objs):
        return client.get(reverse(name, args=[a(objs) if callable(a) else a for a in args]))

    return run


def pk(objs):
    return objs["obj"].pk


def shows(text):
    return lambda _objs, response: (
        text
        in b"".join(getattr(response, "streaming_content", None) or [response.content]).decode()
    )


def an_api_client(_world):
    return {"obj": api_client_create(name="pipeline", scopes=["campaigns:read"], by=None)[0]}


def a_webhook_endpoint(_world):
    client = an_api_client(None)["obj"]
    return {"obj": webhook_endpoint_create(client=client, url="https://crm.example/", by=None)[0]}


def a_parked_webhook_delivery(_world):
    endpoint = a_webhook_endpoint(None)["obj"]
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_seq=1, event_type="member.unsubscribed", payload={"id": "evt_1"},
        state=WebhookState.PARKED,
    )  # fmt: skip
    return {"obj": delivery}


def sends_unknown_delivery(objs):
    return campaign_send_chunk(campaign_id=objs["obj"].campaign_id).sent


CASES: dict[str, Case] = {
    "action accounts.member clear_email_status": Case(
        perms=("accounts.clear_address",),
        gate="accounts.view_member",
        setup=bounced_member,
        run=post_action("accounts_member", "clear_email_status"),
        took_effect=lambda objs, _r: reload(objs["obj"]).email_status == "ok",
    ),
    "action campaigns.noticeversion copy_to_new_version": Case(
        perms=("campaigns.add_noticeversion",),
        gate="campaigns.view_noticeversion",
        setup=a_version,
        run=post_action("campaigns_noticeversion", "copy_to_new_version"),
        took_effect=lambda _objs, _r: NoticeVersion.objects.count() == 2,
    ),
    "action campaigns.delivery resend": Case(
        perms=("campaigns.resend_delivery",),
        gate="campaigns.view_delivery",
        setup=delivery_in(DeliveryStatus.UNKNOWN),
        run=post_action("campaigns_delivery", "resend"),
        took_effect=lambda objs, _r: reload(objs["obj"]).status == DeliveryStatus.PENDING,
        sender=sends_unknown_delivery,
    ),
    "action campaigns.delivery give_up": Case(
        perms=("campaigns.resend_delivery",),
        gate="campaigns.view_delivery",
        setup=delivery_in(DeliveryStatus.UNKNOWN),
        run=post_action("campaigns_delivery", "give_up"),
        took_effect=lambda objs, _r: reload(objs["obj"]).status == DeliveryStatus.FAILED,
    ),
    "action api.apiclient revoke": Case(
        perms=("api.manage_apiclient",),
        gate="api.view_apiclient",
        setup=an_api_client,
        run=post_action("api_apiclient", "revoke"),
        took_effect=lambda objs, _r: reload(objs["obj"]).revoked_at is not None,
    ),
    "action api.webhookendpoint deactivate": Case(
        perms=("api.manage_apiclient",),
        gate="api.view_webhookendpoint",
        setup=a_webhook_endpoint,
        run=post_action("api_webhookendpoint", "deactivate"),
        took_effect=lambda objs, _r: not reload(objs["obj"]).active,
    ),
    "action api.webhookdelivery replay": Case(
        perms=("api.replay_webhookdelivery",),
        gate="api.view_webhookdelivery",
        setup=a_parked_webhook_delivery,
        run=post_action("api_webhookdelivery", "replay"),
        took_effect=lambda objs, _r: reload(objs["obj"]).state == WebhookState.PENDING,
    ),
    "action campaigns.objectionreceipt send_again": Case(
        perms=("campaigns.send_receipt_again",),
        gate="campaigns.view_objectionreceipt",
        setup=failed_receipt,
        run=post_action("campaigns_objectionreceipt", "send_again"),
        took_effect=lambda objs, _r: reload(objs["obj"]).status == ReceiptStatus.OWED,
    ),
    "url admin:campaigns_noticeversion_preview": Case(
        perms=("campaigns.view_noticeversion",),
        gate="campaigns.view_noticeversion",
        setup=a_version,
        run=get("admin:campaigns_noticeversion_preview", pk, "en"),
        took_effect=shows("Subject [en]"),
        allowed_status=200,
        refused_status=403,
    ),
    "url admin:campaigns_noticeversion_send_test": Case(
        perms=("campaigns.send_test_notice",),
        gate="campaigns.view_noticeversion",
        setup=a_version,
        run=lambda client, objs: client.post(
            reverse("admin:campaigns_noticeversion_send_test", args=[objs["obj"].pk, "en"])
        ),
        took_effect=lambda _objs, _r: [m.subject for m in mail.outbox] == ["[TEST] Subject [en]"],
    ),
    "url admin:campaigns_campaign_progress": Case(
        perms=("campaigns.view_campaign",),
        gate="campaigns.view_campaign",
        setup=sent_campaign,
        run=get("admin:campaigns_campaign_progress", pk),
        took_effect=shows("<strong>1</strong> of 1 deliveries finished"),
        allowed_status=200,
        refused_status=403,
    ),
    "url admin:campaigns_campaign_reach": Case(
        perms=("campaigns.view_campaign",),
        gate="campaigns.view_campaign",
        setup=sent_campaign,
        run=get("admin:campaigns_campaign_reach", pk),
        took_effect=shows("members targeted"),
        allowed_status=200,
        refused_status=403,
    ),
    "url admin:campaigns_campaign_not_reached": Case(
        perms=("campaigns.view_campaign", "accounts.view_member"),
        gate="campaigns.view_campaign",
        setup=sent_campaign,
        run=get("admin:campaigns_campaign_not_reached", pk),
        took_effect=shows("user-"),
        allowed_status=200,
        refused_status=403,
    ),
    "url outbox_list": Case(
        perms=("campaigns.view_outbox",),
        gate="campaigns.view_outbox",
        setup=outbox_message,
        run=get("outbox_list"),
        took_effect=shows("ada@example.com"),
        allowed_status=200,
        refused_status=403,
    ),
    "url outbox_message": Case(
        perms=("campaigns.view_outbox",),
        gate="campaigns.view_outbox",
        setup=outbox_message,
        run=get("outbox_message", lambda objs: objs["name"]),
        took_effect=shows("/n/abc/"),
        allowed_status=200,
        refused_status=403,
    ),
    "url admin:auth_user_password_change": Case(
        perms=("auth.change_user",),
        gate="auth.view_user",
        setup=lambda world: {"obj": get_user_model().objects.create_user("victim", password="a")},
        run=lambda client, objs: client.post(
            reverse("admin:auth_user_password_change", args=[objs["obj"].pk]),
            {"password1": "n3w-Passw0rd!", "password2": "n3w-Passw0rd!", "usable_password": "true"},
        ),
        took_effect=lambda objs, _r: reload(objs["obj"]).check_password("n3w-Passw0rd!"),
        refused_status=403,
    ),
    "button submit": Case(
        perms=("campaigns.change_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.DRAFT),
        run=press("submit"),
        took_effect=now_in(CampaignState.AWAITING_APPROVAL),
    ),
    "button approve": Case(
        perms=("campaigns.approve_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.AWAITING_APPROVAL),
        run=press("approve"),
        took_effect=now_in(CampaignState.APPROVED),
    ),
    "button reject": Case(
        perms=("campaigns.approve_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.AWAITING_APPROVAL),
        run=press("reject"),
        took_effect=now_in(CampaignState.DRAFT),
    ),
    "button schedule": Case(
        perms=("campaigns.operate_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.APPROVED, approved=True),
        run=press("schedule"),
        took_effect=now_in(CampaignState.SCHEDULED),
    ),
    "button pause": Case(
        perms=("campaigns.operate_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.SENDING),
        run=press("pause"),
        took_effect=now_in(CampaignState.PAUSED),
    ),
    "button resume": Case(
        perms=("campaigns.operate_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.PAUSED),
        run=press("resume"),
        took_effect=now_in(CampaignState.SENDING),
    ),
    "button cancel": Case(
        perms=("campaigns.operate_campaign",),
        gate="campaigns.view_campaign",
        setup=campaign_in(CampaignState.DRAFT),
        run=press("cancel"),
        took_effect=now_in(CampaignState.CANCELLED),
    ),
}


# One button URL, one case per button (above).
COVERED_BY_BUTTONS = {"url admin:campaigns_campaign_do"}

# Rows to delete with Django's "delete selected" action, per model whose admin lets
# someone (with the delete permission) delete; the others refuse everyone.
MAKERS: dict[str, Callable[[], object]] = {
    "accounts.member": lambda: MemberFactory(),
    "accounts.purpose": lambda: ai_training(),
    "campaigns.notice": lambda: Notice.objects.create(title="T"),
    "campaigns.noticeversion": lambda: notice_version(),
    "campaigns.campaign": lambda: campaign(),
    "auth.user": lambda: get_user_model().objects.create_user("someone"),
    "auth.group": lambda: Group.objects.create(name="editors"),
    "axes.accessattempt": lambda: _access_attempt(),
}


def _access_attempt():
    from axes.models import AccessAttempt

    return AccessAttempt.objects.create(
        user_agent="t", ip_address="192.0.2.1", username="priya", http_accept="*/*",
        path_info="/admin/login/", get_data="", post_data="", failures_since_start=5,
    )  # fmt: skip


def _delete_case(model, model_admin) -> Case:
    opts = model._meta
    superuser = get_user_model()(is_superuser=True, is_active=True)
    deletable = model_admin.has_delete_permission(type("R", (), {"user": superuser})())
    maker = MAKERS.get(opts.label_lower)
    return Case(
        perms=(f"{opts.app_label}.delete_{opts.model_name}",) if deletable else None,
        gate=f"{opts.app_label}.view_{opts.model_name}",
        setup=lambda world: {"obj": maker()} if maker else {"obj": model(pk=0)},
        run=post_action(f"{opts.app_label}_{opts.model_name}", "delete_selected"),
        took_effect=lambda objs, _r: reload(objs["obj"]) is None,
        # Django's own admins ignore an action the user has none of: the list again.
        refused_status=302 if isinstance(model_admin, StaffAdmin) else 200,
    )


for _model, _model_admin in admin.site._registry.items():
    if "delete_selected" in {n for _f, n, _d in _model_admin._get_base_actions()}:
        CASES[f"action {_model._meta.label_lower} delete_selected"] = _delete_case(
            _model, _model_admin
        )


# --- The four staff members -------------------------------------------------------------


@pytest.fixture
def users(db) -> dict:
    perms = Permission.objects.select_related("content_type")
    ours = [p for p in perms if p.content_type.app_label in OUR_APPS]
    view = [p for p in perms if p.codename.startswith("view_")]
    grants = {
        "nobody": [],
        "viewer": view,
        "editor": view + [p for p in ours if p.codename.startswith(("add_", "change_"))],
        "approver": view
        + [p for p in ours if not p.codename.startswith(("view_", "add_", "change_", "delete_"))],
    }
    made = {}
    for role, granted in grants.items():
        user = get_user_model().objects.create_user(role, f"{role}@example.com", is_staff=True)
        user.user_permissions.add(*granted)
        made[role] = get_user_model().objects.get(pk=user.pk)  # no cached permissions
    return made


def test_the_roles_are_what_the_cases_assume(users):
    assert not users["nobody"].get_all_permissions()
    assert users["viewer"].has_perm("campaigns.view_delivery")
    assert not users["viewer"].has_perm("campaigns.change_campaign")
    assert users["editor"].has_perms(["campaigns.change_campaign", "campaigns.add_noticeversion"])
    assert not users["editor"].has_perm("campaigns.approve_campaign")
    assert users["approver"].has_perms(["campaigns.approve_campaign", "accounts.clear_address"])
    assert not users["approver"].has_perm("campaigns.change_campaign")


def test_every_admin_action_and_custom_page_has_a_case():
    assert discovered() == set(CASES) | COVERED_BY_BUTTONS


def snapshot() -> dict:
    """Every row of the project's tables and of staff accounts, and the emails sent."""
    models = [m for app in OUR_APPS for m in apps.get_app_config(app).get_models()]
    models += [get_user_model(), Group, apps.get_model("axes", "AccessAttempt")]
    # The staff audit trail: a refused action records nothing there either.
    models += [apps.get_model("audit", "StaffAction")]
    rows = {m._meta.label: list(m.objects.order_by("pk").values()) for m in models}
    return {"rows": rows, "emails": [(m.subject, m.to) for m in mail.outbox]}


def error_messages(client, response) -> list[str]:
    page = client.get(response["Location"])
    return [str(m) for m in page.context["messages"] if m.level_tag == "error"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", sorted(CASES))
def test_staff_action_or_page(key, role, users, settings, tmp_path):
    case, user = CASES[key], users[role]
    objs = case.setup(World(users=users, settings=settings, tmp_path=tmp_path))
    client = Client()
    client.force_login(user)
    before = snapshot()

    response = case.run(client, objs)

    allowed = case.perms is not None and user.has_perms(case.perms)
    if allowed:
        assert response.status_code == case.allowed_status, key
        assert case.took_effect(objs, response), key
        if case.sender:
            assert case.sender(objs) == 1
        return
    expected = case.refused_status if user.has_perm(case.gate) else 403
    assert response.status_code == expected, (key, role)
    assert snapshot() == before, "a refused action changed something"
    if case.sender:
        assert case.sender(objs) == 0, "a refused action led to an email"
    if expected == 302:
        assert error_messages(client, response), "a refusal must say so"


# --- The services refuse too ------------------------------------------------------------
# An admin check alone can be bypassed (a command, a console page, a race with a stale
# page): each service that acts for staff checks the acting user itself.


@dataclass
class Service:
    perm: str
    setup: Callable[[], dict]
    call: Callable[[dict, object], object]
    system: bool = True  # the system (by=None) may call it


def _writer():
    return get_user_model().objects.create_user("writer", is_staff=True)


def _campaign_in(state, **fields):
    return lambda: {"c": campaign(state=state, last_edited_by=_writer(), **fields)}


SERVICES: dict[str, Service] = {
    "lifecycle.campaign_create": Service(
        "campaigns.add_campaign",
        lambda: {"v": notice_version()},
        lambda o, by: lifecycle.campaign_create(by=by, name="New", notice_version=o["v"]),
    ),
    "lifecycle.campaign_edit": Service(
        "campaigns.change_campaign",
        _campaign_in(CampaignState.DRAFT),
        lambda o, by: lifecycle.campaign_edit(campaign=o["c"], by=by, name="Renamed"),
    ),
    "lifecycle.campaign_submit": Service(
        "campaigns.change_campaign",
        _campaign_in(CampaignState.DRAFT),
        lambda o, by: lifecycle.campaign_submit(campaign=o["c"], by=by),
        system=False,
    ),
    "lifecycle.campaign_approve": Service(
        "campaigns.approve_campaign",
        _campaign_in(CampaignState.AWAITING_APPROVAL),
        lambda o, by: lifecycle.campaign_approve(campaign=o["c"], by=by),
        system=False,
    ),
    "lifecycle.campaign_reject": Service(
        "campaigns.approve_campaign",
        _campaign_in(CampaignState.AWAITING_APPROVAL),
        lambda o, by: lifecycle.campaign_reject(campaign=o["c"], by=by, note="no"),
        system=False,
    ),
    "lifecycle.campaign_schedule": Service(
        "campaigns.operate_campaign",
        lambda: {"c": campaign(state=CampaignState.APPROVED, approved_by=_writer())},
        lambda o, by: lifecycle.campaign_schedule(campaign=o["c"], by=by, starts_at=timezone.now()),
        system=False,
    ),
    "lifecycle.campaign_pause": Service(
        "campaigns.operate_campaign",
        _campaign_in(CampaignState.SENDING),
        lambda o, by: lifecycle.campaign_pause(campaign=o["c"], by=by),
    ),
    "lifecycle.campaign_resume": Service(
        "campaigns.operate_campaign",
        _campaign_in(CampaignState.PAUSED),
        lambda o, by: lifecycle.campaign_resume(campaign=o["c"], by=by),
    ),
    "lifecycle.campaign_cancel": Service(
        "campaigns.operate_campaign",
        _campaign_in(CampaignState.DRAFT),
        lambda o, by: lifecycle.campaign_cancel(campaign=o["c"], by=by),
    ),
    "notices.notice_version_copy": Service(
        "campaigns.add_noticeversion",
        lambda: {"v": notice_version()},
        lambda o, by: notices.notice_version_copy(version=o["v"], by=by),
    ),
    "notices.notice_send_test": Service(
        "campaigns.send_test_notice",
        lambda: {"v": notice_version()},
        lambda o, by: notices.notice_send_test(version=o["v"], locale="en", to="me@x.test", by=by),
    ),
    "reconcile.delivery_resend": Service(
        "campaigns.resend_delivery",
        lambda: delivery_in(DeliveryStatus.UNKNOWN)(None),
        lambda o, by: reconcile.delivery_resend(delivery=o["obj"], by=by),
    ),
    "reconcile.deliveries_resend": Service(
        "campaigns.resend_delivery",
        lambda: delivery_in(DeliveryStatus.UNKNOWN)(None),
        lambda o, by: reconcile.deliveries_resend(deliveries=Delivery.objects.all(), by=by),
    ),
    "reconcile.deliveries_give_up": Service(
        "campaigns.resend_delivery",
        lambda: delivery_in(DeliveryStatus.UNKNOWN)(None),
        lambda o, by: reconcile.deliveries_give_up(deliveries=Delivery.objects.all(), by=by),
    ),
    "clients.api_client_create": Service(
        "api.manage_apiclient",
        dict,
        lambda o, by: api_client_create(name="crm", scopes=["members:write"], by=by),
    ),
    "clients.api_client_revoke": Service(
        "api.manage_apiclient",
        lambda: an_api_client(None),
        lambda o, by: api_client_revoke(client=o["obj"], by=by),
    ),
    "webhooks.webhook_endpoint_create": Service(
        "api.manage_apiclient",
        lambda: an_api_client(None),
        lambda o, by: webhook_endpoint_create(client=o["obj"], url="https://crm.example/", by=by),
    ),
    "webhooks.webhook_endpoint_deactivate": Service(
        "api.manage_apiclient",
        lambda: a_webhook_endpoint(None),
        lambda o, by: webhook_endpoint_deactivate(endpoint=o["obj"], by=by),
    ),
    "webhooks.webhook_deliveries_replay": Service(
        "api.replay_webhookdelivery",
        lambda: a_parked_webhook_delivery(None),
        lambda o, by: webhook_deliveries_replay(deliveries=WebhookDelivery.objects.all(), by=by),
    ),
    "receipts.receipts_retry": Service(
        "campaigns.send_receipt_again",
        lambda: failed_receipt(None),
        lambda o, by: receipts.receipts_retry(receipts=ObjectionReceipt.objects.all(), by=by),
    ),
    "members.member_email_status_clear": Service(
        "accounts.clear_address",
        lambda: bounced_member(None),
        lambda o, by: members.member_email_status_clear(member=o["obj"], by=by, reason="fixed"),
        system=False,  # staff clear an address, named in its audit row
    ),
    "members.member_address_change": Service(
        "accounts.change_member",
        lambda: bounced_member(None),
        lambda o, by: transaction.atomic()(members.member_address_change)(
            member=o["obj"], email="new@example.com", by=by, reason="moved"
        ),
        system=False,  # staff change an address, named in its audit row
    ),
    "erasure.member_erase": Service(
        "accounts.delete_member",
        lambda: bounced_member(None),
        lambda o, by: erasure.member_erase(member=o["obj"], source=Source.ADMIN, by=by),
    ),
    "policies.purpose_create": Service(
        "accounts.add_purpose",
        dict,
        lambda o, by: policies.purpose_create(slug="ads", name="Ads", by=by),
    ),
    "policies.policy_set_mode": Service(
        "accounts.change_jurisdictionpolicy",
        lambda: {"p": ai_training().policies.get(jurisdiction="US")},
        lambda o, by: policies.policy_set_mode(policy=o["p"], mode="opt_in", by=by),
    ),
    # Processing gates: each acts for a named person (its history names them).
    "gates.gate_define": Service(
        "gates.add_gate",
        lambda: {"place": told_place(ai_training())},
        lambda o, by: gates.gate_define(
            purpose=o["place"].purpose, jurisdiction="UK", terms=o["place"].terms(), by=by
        ),
        system=False,
    ),
    "gates.gate_change": Service(
        "gates.change_gate",
        lambda: _gated("defined"),
        lambda o, by: gates.gate_change(
            gate=o["gate"], terms=o["place"].terms(window_days=60), by=by
        ),
        system=False,
    ),
    "gates.gate_propose": Service(
        "gates.open_gate",
        lambda: _gated("ready"),
        lambda o, by: gates.gate_propose(gate=o["gate"], by=by),
        system=False,
    ),
    "gates.gate_open": Service(
        "gates.open_gate",
        lambda: _gated("proposed"),
        lambda o, by: gates.gate_open(gate=o["gate"], by=by),
        system=False,
    ),
    "gates.gate_close": Service(
        "gates.close_gate",
        lambda: _gated("proposed"),
        lambda o, by: gates.gate_close(gate=o["gate"], by=by),
        system=False,
    ),
    "gates.consumer_confirmation_record": Service(
        "gates.confirm_consumers",
        lambda: _gated("defined"),
        lambda o, by: gates.consumer_confirmation_record(
            gate=o["gate"], statement="applied", cursor=0, by=by
        ),
        system=False,
    ),
}


def _gated(stage: str) -> dict:
    """A UK gate defined (by ada), ready to open (ben's confirmation of the feed), or
    proposed (by ben): never by the person trying the service."""
    place = told_place(ai_training())
    gate = place.gate()
    if stage in ("ready", "proposed"):
        head = suppression_feed_head(purpose=place.purpose)
        gates.consumer_confirmation_record(gate=gate, statement="ok", cursor=head, by=place.ben)
    if stage == "proposed":
        gates.gate_propose(gate=gate, by=place.ben)
    return {"place": place, "gate": gate}


def test_every_service_that_acts_for_staff_is_checked_here():
    """A public service taking the acting user ``by`` must be in SERVICES."""
    import importlib
    import inspect
    import pkgutil

    found = set()
    modules = [
        (info.name, importlib.import_module(f"{package}.{info.name}"))
        for package in ("accounts.services", "api.services", "campaigns.services")
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__)
    ]
    modules.append(("gates", importlib.import_module("gates.services")))
    for short, module in modules:
        for name, func in inspect.getmembers(module, inspect.isfunction):
            own = func.__module__ == module.__name__ and not name.startswith("_")
            if own and "by" in inspect.signature(func).parameters:
                found.add(f"{short}.{name}")
    assert found == set(SERVICES)


def everything_but(perm: str):
    """A staff member holding every permission of the project's apps except ``perm``."""
    app_label, codename = perm.split(".")
    user = get_user_model().objects.create_user("almost", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=OUR_APPS).exclude(
            content_type__app_label=app_label, codename=codename
        )
    )
    return get_user_model().objects.get(pk=user.pk)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_service_refuses_a_user_without_its_permission_and_changes_nothing(name):
    service = SERVICES[name]
    objs = service.setup()
    user = everything_but(service.perm)
    before = snapshot()
    with pytest.raises(PermissionRefused) as refused:
        service.call(objs, user)
    assert refused.value.perm == service.perm
    assert service.perm in str(refused.value)
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_service_acts_for_a_user_with_only_its_permission(name):
    from tests.factories import staff_user

    service = SERVICES[name]
    objs = service.setup()
    user = staff_user("holder", service.perm)
    before = snapshot()
    service.call(objs, user)
    assert snapshot() != before


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.system))
def test_the_system_acts_without_a_user(name):
    """Beat, workers and commands pass by=None: allowed, and said so explicitly."""
    service = SERVICES[name]
    objs = service.setup()
    before = snapshot()
    service.call(objs, None)
    assert snapshot() != before


def test_an_inactive_staff_member_holds_no_permission():
    from tests.factories import staff_user

    user = staff_user("left", "campaigns.operate_campaign", is_active=False)
    c = campaign(state=CampaignState.SENDING)
    with pytest.raises(PermissionRefused):
        lifecycle.campaign_pause(campaign=c, by=user)


# --- Refusals in the admin are errors, never a 500 or "changed successfully" -------------


def page_messages(client, response) -> list[tuple[str, str]]:
    page = client.get(response["Location"])
    return [(m.level_tag, str(m)) for m in page.context["messages"]]


def test_saving_a_frozen_version_from_a_stale_tab_shows_the_refusal(client):
    from django.contrib.admin.models import LogEntry

    from tests.factories import CAMPAIGN_EDITOR, staff_user

    version = notice_version(locales=("en",))
    text = version.texts.get()
    client.force_login(staff_user("ed", *CAMPAIGN_EDITOR))
    url = reverse("admin:campaigns_noticeversion_change", args=[version.pk])
    assert client.get(url).status_code == 200  # the tab is opened while still a draft
    NoticeVersion.objects.filter(pk=version.pk).update(frozen_at=timezone.now())  # sending

    response = client.post(
        url,
        {
            "notice": version.notice_id,
            "default_locale": "en",
            "effective_date": "2027-03-01",
            "objection_deadline": "2027-03-01",
            "texts-TOTAL_FORMS": "1",
            "texts-INITIAL_FORMS": "1",
            "texts-0-id": text.pk,
            "texts-0-version": version.pk,
            "texts-0-locale": "en",
            "texts-0-subject": "Changed after sending",
            "texts-0-body_markdown": "Changed",
        },
    )

    assert response.status_code == 302 and response["Location"] == url
    [(level, message)] = page_messages(client, response)
    assert level == "error" and "has been sent and can no longer be edited" in message
    assert version.texts.get().subject == text.subject
    assert NoticeVersion.objects.get(pk=version.pk).objection_deadline == date(2027, 2, 15)
    assert not LogEntry.objects.exists()


def test_an_edit_the_lifecycle_refuses_is_not_reported_as_saved(client):
    from django.contrib.admin.models import LogEntry

    from tests.factories import CAMPAIGN_EDITOR, staff_user

    c = campaign(state=CampaignState.SENDING, name="UK notice")
    client.force_login(staff_user("ed", *CAMPAIGN_EDITOR))
    url = reverse("admin:campaigns_campaign_change", args=[c.pk])

    response = client.post(
        url,
        {
            "name": "Renamed while sending",
            "notice_version": c.notice_version_id,
            "countries": "",
            "locales": "",
            "throttle_per_minute": "6000",
            "max_reminders": "0",
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
            "variants-TOTAL_FORMS": "0",
            "variants-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302 and response["Location"] == url
    [(level, message)] = page_messages(client, response)
    assert level == "error" and "cannot change once sending started" in message
    assert Campaign.objects.get(pk=c.pk).name == "UK notice"
    assert not LogEntry.objects.exists()


def test_a_campaign_with_an_approval_history_cannot_be_deleted(client):
    from django.db.models import ProtectedError

    from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, staff_user

    ed, amy = staff_user("ed", *CAMPAIGN_EDITOR), staff_user("amy", *CAMPAIGN_APPROVER)
    c = lifecycle.campaign_create(by=ed, name="UK", notice_version=notice_version())
    lifecycle.campaign_submit(campaign=c, by=ed)
    lifecycle.campaign_approve(campaign=c, by=amy)
    with pytest.raises(ProtectedError):
        c.delete()
    lead = get_user_model().objects.create_superuser("lead", "lead@example.com", "pw")
    client.force_login(lead)
    client.post(reverse("admin:campaigns_campaign_delete", args=[c.pk]), {"post": "yes"})
    assert Campaign.objects.filter(pk=c.pk).exists()
    assert c.transitions.count() == 2


def test_each_staff_member_sees_only_the_buttons_they_may_press(client):
    from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, staff_user

    c = campaign(state=CampaignState.AWAITING_APPROVAL, last_edited_by=_writer())
    url = reverse("admin:campaigns_campaign_change", args=[c.pk])
    client.force_login(staff_user("ed", *CAMPAIGN_EDITOR))
    page = client.get(url).content.decode()
    assert "Approve</button>" not in page and "Cancel campaign</button>" not in page
    client.force_login(staff_user("amy", *CAMPAIGN_APPROVER))
    page = client.get(url).content.decode()
    assert "Approve</button>" in page and "Send back to draft</button>" in page


def test_the_outbox_link_shows_only_to_those_who_may_read_it(client):
    from tests.factories import staff_user

    client.force_login(staff_user("viewer", "campaigns.view_campaign"))
    assert reverse("outbox_list") not in client.get(reverse("admin:index")).content.decode()
    client.force_login(staff_user("reader", "campaigns.view_outbox"))
    assert reverse("outbox_list") in client.get(reverse("admin:index")).content.decode()
