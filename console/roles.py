"""Staff roles: Django groups whose permissions are this module's table, nothing else.

``ROLES`` is the one place a role's permissions are written; ``roles_sync`` makes the
groups match it (a data migration calls it, and again whenever the table changes).
Roles only ever grant: a user may hold several, and holds the union of their
permissions (plus any given to them directly). The services check the permissions
(``accounts.permissions``), so a role is no more than the permissions it lists.

Nobody is a second approver by role alone: Administrator does not include approval,
and ``campaigns.services.lifecycle.approval_refusal`` refuses whoever created,
submitted or last edited a campaign, whatever they hold.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import Q

from accounts.permissions import permission_require

# Read only. Not the outbox (members' addresses and working member links), never an
# API key (only hashes are stored), nothing that changes anything.
VIEWER: tuple[str, ...] = (
    "campaigns.view_notice",
    "campaigns.view_noticeversion",
    "campaigns.view_noticetext",
    "campaigns.view_campaign",
    "campaigns.view_campaigntransition",
    "campaigns.view_delivery",
    "campaigns.view_deliveryevent",
    "campaigns.view_objectionreceipt",
    "accounts.view_member",
    "accounts.view_emailstatuschange",
    "accounts.view_purpose",
    "accounts.view_purposetext",
    "accounts.view_jurisdictionpolicy",
    "accounts.view_jurisdictionpolicychange",
    "accounts.view_preference",
    "accounts.view_consentevent",
    "accounts.view_ledgercheck",
    "accounts.view_suppressionchange",
    "api.view_apiclient",
    "api.view_consumerposition",
    "api.view_webhookendpoint",
    "api.view_webhookdelivery",
    # That a campaign's evidence packs exist, their state and digests; not their contents.
    "evidence.view_evidencepack",
    "gates.view_gate",
    "gates.view_gateevent",
    "gates.view_consumerconfirmation",
)
# Writes notices, their versions and texts, and campaigns with their audiences; copies
# a version, sends a test to themselves, submits for approval.
EDITOR: tuple[str, ...] = (
    *VIEWER,
    "campaigns.add_notice",
    "campaigns.change_notice",
    "campaigns.add_noticeversion",
    "campaigns.change_noticeversion",
    "campaigns.add_noticetext",
    "campaigns.change_noticetext",
    "campaigns.send_test_notice",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
)
EVIDENCE_PACKS: tuple[str, ...] = (
    "evidence.request_evidencepack",
    "evidence.download_evidencepack",
)
# Approves or sends back; schedules, pauses, resumes, cancels; resends or gives up
# deliveries; sends failed objection receipts again; requests and downloads evidence packs;
# proposes and (another Approver) confirms a processing gate's opening, closes one,
# records the signed confirmation that stands in for the feed's consumers while none is
# registered.
APPROVER: tuple[str, ...] = (
    *VIEWER,
    "campaigns.approve_campaign",
    "campaigns.operate_campaign",
    "campaigns.resend_delivery",
    "campaigns.send_receipt_again",
    # Evidence packs hold every member's external id and outcomes: asking for one and
    # taking one away are for those who answer for the campaign (and administrators).
    *EVIDENCE_PACKS,
    "gates.open_gate",
    "gates.close_gate",
    "gates.confirm_consumers",
)
# Staff accounts and their roles, API clients and webhook endpoints, purposes and
# jurisdiction policies, processing gates' conditions (defining and changing them;
# closing one, which is the safe direction), members' addresses (clears, changes,
# erasure), login lockouts, the outbox. Not approval, nor opening a gate.
ADMINISTRATOR: tuple[str, ...] = (
    *VIEWER,
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.view_group",
    "auth.add_group",
    "auth.change_group",
    "auth.delete_group",
    "api.add_apiclient",
    "api.manage_apiclient",
    "api.add_webhookendpoint",
    "api.replay_webhookdelivery",
    "api.view_webhookattempt",
    "accounts.add_purpose",
    "accounts.change_purpose",
    "accounts.add_purposetext",
    "accounts.change_purposetext",
    "accounts.change_jurisdictionpolicy",
    "accounts.clear_address",
    "accounts.change_member",
    "accounts.delete_member",
    "axes.view_accessattempt",
    "axes.delete_accessattempt",
    "campaigns.view_outbox",
    "audit.view_staffaction",
    *EVIDENCE_PACKS,
    "gates.add_gate",
    "gates.change_gate",
    "gates.close_gate",
)
ROLES: dict[str, tuple[str, ...]] = {
    "Viewer": VIEWER,
    "Editor": EDITOR,
    "Approver": APPROVER,
    "Administrator": ADMINISTRATOR,
}
ASSIGN = "auth.change_user"


class RoleError(ValueError):
    """An unknown role or user: nothing was changed."""


def roles_sync() -> dict[str, int]:
    """Make each role's group hold exactly its permissions (creating the group, and any
    permission Django has not created yet: it creates them only after ``migrate``).
    Groups that are not roles are left alone. Returns {role: permissions}."""
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    synced = {}
    with transaction.atomic():
        for role, perms in ROLES.items():
            group, _created = Group.objects.get_or_create(name=role)
            group.permissions.set(_permissions(perms))
            synced[role] = len(set(perms))
    return synced


def _permissions(perms: tuple[str, ...]) -> list[Permission]:
    wanted = set(perms)
    by_name = Q()
    for perm in wanted:
        app_label, codename = perm.split(".")
        by_name |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(by_name).select_related("content_type"))
    missing = wanted - {f"{p.content_type.app_label}.{p.codename}" for p in found}
    if missing:
        raise LookupError(f"no such permission: {', '.join(sorted(missing))}")
    return found


def staff_role_assign(*, user: User, role: str, by: User | None) -> bool:
    """Give ``user`` the role (and staff status, which the console and admin need).
    False when they held it already. ``by=None``: the system (the ``staff_role``
    command)."""
    permission_require(by=by, perm=ASSIGN)
    group = _group(role)
    with transaction.atomic():
        held = user.groups.filter(pk=group.pk).exists()
        user.groups.add(group)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    return not held


def staff_role_remove(*, user: User, role: str, by: User | None) -> bool:
    """Take the role from ``user``; False when they did not hold it. Their other roles,
    and staff status, stay."""
    permission_require(by=by, perm=ASSIGN)
    group = _group(role)
    held = user.groups.filter(pk=group.pk).exists()
    user.groups.remove(group)
    return held


def staff_roles_held() -> dict[str, list[str]]:
    """{role: usernames holding it}, every role listed, in one query."""
    held: dict[str, list[str]] = {role: [] for role in ROLES}
    pairs = (
        User.groups.through.objects.filter(group__name__in=ROLES)
        .order_by("group__name", "user__username")
        .values_list("group__name", "user__username")
    )
    for role, username in pairs:
        held[role].append(username)
    return held


def staff_user_get(username: str) -> User:
    try:
        return User.objects.get(username=username)
    except ObjectDoesNotExist:
        raise RoleError(f"no user named “{username}”") from None


def _group(role: str) -> Group:
    name = next((name for name in ROLES if name.lower() == role.lower()), None)
    if name is None:
        raise RoleError(f"no role named “{role}”; the roles are: {', '.join(ROLES)}")
    try:
        return Group.objects.get(name=name)
    except ObjectDoesNotExist:
        raise RoleError(f"the group “{role}” is missing: run `manage.py migrate`") from None
