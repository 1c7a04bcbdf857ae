"""Staff roles (console.roles): the groups a migration creates, the command that hands
them out, and what each role may and may not do, tried on the services themselves with
the real groups."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, ManagementUtility, call_command
from django.utils import timezone

from accounts.models import EmailStatus, JurisdictionPolicy, Member, PolicyMode
from accounts.permissions import PermissionRefused
from accounts.services import members, policies
from api.models import ApiClient
from api.services.clients import api_client_create
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services import lifecycle, reconcile
from console import roles
from console.roles import ROLES, RoleError, roles_sync, staff_role_assign, staff_role_remove
from tests.factories import MemberFactory, ai_training, campaign, notice_version

pytestmark = pytest.mark.django_db
S = CampaignState


def perms_of(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def holder(username: str, *role_names: str) -> User:
    """A staff member holding ``role_names`` (through the service, as the system)."""
    user = User.objects.create_user(username, f"{username}@example.com")
    for role in role_names:
        staff_role_assign(user=user, role=role, by=None)
    return User.objects.get(pk=user.pk)  # no cached permissions


# --- What each role holds --------------------------------------------------------------

# What each role adds to Viewer's: written out here, so a change to the table is a
# deliberate change to this test too.
EDITOR_ADDS = {
    "campaigns.add_notice",
    "campaigns.change_notice",
    "campaigns.add_noticeversion",
    "campaigns.change_noticeversion",
    "campaigns.add_noticetext",
    "campaigns.change_noticetext",
    "campaigns.send_test_notice",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
}
APPROVER_ADDS = {
    "campaigns.approve_campaign",
    "campaigns.operate_campaign",
    "campaigns.resend_delivery",
    "campaigns.send_receipt_again",
    "evidence.request_evidencepack",
    "evidence.download_evidencepack",
    "gates.open_gate",
    "gates.close_gate",
    "gates.confirm_consumers",
}
ADMINISTRATOR_ADDS = {
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
    "evidence.request_evidencepack",
    "evidence.download_evidencepack",
    "gates.add_gate",
    "gates.change_gate",
    "gates.close_gate",
}


def test_the_migration_made_the_four_roles_as_the_table_says():
    assert set(ROLES) <= set(Group.objects.values_list("name", flat=True))
    for role, perms in ROLES.items():
        assert perms_of(role) == set(perms), role


def test_a_viewer_only_reads_and_never_the_outbox_or_keys():
    viewer = perms_of("Viewer")
    assert viewer and all(p.split(".")[1].startswith("view_") for p in viewer)
    assert "campaigns.view_outbox" not in viewer
    assert {"campaigns.view_campaign", "accounts.view_consentevent", "api.view_apiclient"} <= viewer


def test_each_role_is_a_viewer_plus_its_own_permissions():
    viewer = perms_of("Viewer")
    assert perms_of("Editor") - viewer == EDITOR_ADDS
    assert perms_of("Approver") - viewer == APPROVER_ADDS
    assert perms_of("Administrator") - viewer == ADMINISTRATOR_ADDS
    assert all(viewer <= perms_of(role) for role in ROLES)


def test_only_the_approver_approves():
    holding = [r for r in ROLES if "campaigns.approve_campaign" in perms_of(r)]
    assert holding == ["Approver"]


def test_sync_puts_a_changed_group_back_and_leaves_other_groups_alone():
    editor = Group.objects.get(name="Editor")
    extra = Permission.objects.get(codename="approve_campaign")
    editor.permissions.add(extra)
    editor.permissions.remove(Permission.objects.get(codename="add_campaign"))
    mine = Group.objects.create(name="Auditors")
    mine.permissions.add(extra)
    Group.objects.filter(name="Viewer").delete()

    roles_sync()

    assert perms_of("Editor") == set(ROLES["Editor"])
    assert perms_of("Viewer") == set(ROLES["Viewer"])
    assert perms_of("Auditors") == {"campaigns.approve_campaign"}


def test_sync_refuses_a_permission_that_does_not_exist_and_changes_nothing(monkeypatch):
    """A permission no installed app defines (a typo, or an app not installed yet)."""
    before = {role: perms_of(role) for role in ROLES}
    table = {**ROLES, "Viewer": (*ROLES["Viewer"], "audit.view_nonexistent")}
    monkeypatch.setattr(roles, "ROLES", table)
    with pytest.raises(LookupError, match=r"audit\.view_nonexistent"):
        roles_sync()
    assert {role: perms_of(role) for role in before} == before


# --- Holding and losing roles -----------------------------------------------------------


def test_roles_add_up_and_removing_one_keeps_the_others():
    both = holder("pat", "Editor", "Approver")
    assert both.is_staff
    assert both.has_perms(["campaigns.change_campaign", "campaigns.approve_campaign"])
    assert staff_role_remove(user=both, role="Approver", by=None) is True
    both = User.objects.get(pk=both.pk)
    assert both.has_perm("campaigns.change_campaign")
    assert not both.has_perm("campaigns.approve_campaign")
    assert staff_role_remove(user=both, role="Approver", by=None) is False


def test_an_administrator_hands_out_roles_and_an_editor_cannot():
    admin, editor = holder("ada", "Administrator"), holder("ed", "Editor")
    newcomer = User.objects.create_user("new")
    with pytest.raises(PermissionRefused, match=r"auth\.change_user"):
        staff_role_assign(user=newcomer, role="Approver", by=editor)
    with pytest.raises(PermissionRefused):
        staff_role_remove(user=editor, role="Editor", by=editor)
    assert not newcomer.groups.exists() and editor.groups.filter(name="Editor").exists()

    assert staff_role_assign(user=newcomer, role="Approver", by=admin) is True
    assert list(newcomer.groups.values_list("name", flat=True)) == ["Approver"]


def test_an_unknown_role_is_refused_and_nothing_changes():
    user = User.objects.create_user("new")
    with pytest.raises(RoleError, match="no role named “Owner”; the roles are: Viewer"):
        staff_role_assign(user=user, role="Owner", by=None)
    assert not user.groups.exists() and not User.objects.get(pk=user.pk).is_staff


# --- The command -------------------------------------------------------------------------


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("staff_role", *args, stdout=out)
    return out.getvalue()


def test_the_command_assigns_removes_and_lists():
    User.objects.create_user("priya")
    User.objects.create_user("sam")
    assert run("priya", "approver") == "priya now holds approver\n"
    assert run("priya", "Approver") == "priya already held Approver\n"
    assert run("sam", "Editor") == "sam now holds Editor\n"
    assert run("priya", "Editor") == "priya now holds Editor\n"
    assert run("--list") == (
        "Viewer: (nobody)\nEditor: priya, sam\nApprover: priya\nAdministrator: (nobody)\n"
    )
    assert run("priya", "Editor", "--remove") == "priya no longer holds Editor\n"
    assert User.objects.get(username="priya").has_perm("campaigns.approve_campaign")
    assert not User.objects.get(username="priya").has_perm("campaigns.change_campaign")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["ghost", "Editor"], "no user named “ghost”"),
        (["priya", "Owner"], "no role named “Owner”"),
        (["priya"], "give a username and a role"),
        (["--list", "priya"], "--list takes no username"),
    ],
)
def test_the_command_refuses_what_it_cannot_do_and_changes_nothing(args, error):
    User.objects.create_user("priya")
    with pytest.raises(CommandError, match=error):
        run(*args)
    assert not User.objects.get(username="priya").groups.exists()


def test_the_command_exits_non_zero_on_an_error(capsys):
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "staff_role", "ghost", "Editor", "--skip-checks"]).execute()
    assert exited.value.code != 0
    assert "no user named “ghost”" in capsys.readouterr().err


# --- Each role against the services ----------------------------------------------------


@dataclass
class Act:
    setup: Callable[[], dict]
    call: Callable[[dict, User], object]
    done: Callable[[dict], bool]


def _state(c: Campaign) -> str:
    return Campaign.objects.get(pk=c.pk).state


def _in(state: str, **fields) -> Callable[[], dict]:
    return lambda: {"c": campaign(state=state, **fields)}


def _unknown_delivery() -> dict:
    c = campaign(state=S.SENDING)
    return {"d": Delivery.objects.create(campaign=c, member=MemberFactory(), status="unknown")}


def _policy() -> dict:
    policy = ai_training().policies.get(jurisdiction="US")
    other = next(mode for mode in PolicyMode.values if mode != policy.mode)
    return {"p": policy, "mode": other}


ACTS: dict[str, Act] = {
    "create": Act(
        lambda: {"v": notice_version()},
        lambda o, by: lifecycle.campaign_create(by=by, name="New", notice_version=o["v"]),
        lambda o: Campaign.objects.filter(name="New").exists(),
    ),
    "edit": Act(
        _in(S.DRAFT),
        lambda o, by: lifecycle.campaign_edit(campaign=o["c"], by=by, jurisdictions=["EU"]),
        lambda o: Campaign.objects.get(pk=o["c"].pk).jurisdictions == ["EU"],
    ),
    "submit": Act(
        _in(S.DRAFT),
        lambda o, by: lifecycle.campaign_submit(campaign=o["c"], by=by),
        lambda o: _state(o["c"]) == S.AWAITING_APPROVAL,
    ),
    "approve": Act(
        _in(S.AWAITING_APPROVAL),
        lambda o, by: lifecycle.campaign_approve(campaign=o["c"], by=by),
        lambda o: _state(o["c"]) == S.APPROVED,
    ),
    "schedule": Act(
        lambda: {
            "c": campaign(
                state=S.APPROVED,
                starts_at=timezone.now(),
                approved_by=User.objects.create_user("colleague"),
            )
        },
        lambda o, by: lifecycle.campaign_schedule(
            campaign=Campaign.objects.get(pk=o["c"].pk), by=by
        ),
        lambda o: _state(o["c"]) == S.SCHEDULED,
    ),
    "pause": Act(
        _in(S.SENDING),
        lambda o, by: lifecycle.campaign_pause(campaign=o["c"], by=by),
        lambda o: _state(o["c"]) == S.PAUSED,
    ),
    "resume": Act(
        _in(S.PAUSED),
        lambda o, by: lifecycle.campaign_resume(campaign=o["c"], by=by),
        lambda o: _state(o["c"]) == S.SENDING,
    ),
    "cancel": Act(
        _in(S.DRAFT),
        lambda o, by: lifecycle.campaign_cancel(campaign=o["c"], by=by),
        lambda o: _state(o["c"]) == S.CANCELLED,
    ),
    "resend": Act(
        _unknown_delivery,
        lambda o, by: reconcile.deliveries_resend(deliveries=Delivery.objects.all(), by=by),
        lambda o: Delivery.objects.get().status == DeliveryStatus.PENDING,
    ),
    "policy change": Act(
        _policy,
        lambda o, by: policies.policy_set_mode(policy=o["p"], mode=o["mode"], by=by),
        lambda o: JurisdictionPolicy.objects.get(pk=o["p"].pk).mode == o["mode"],
    ),
    "address clear": Act(
        lambda: {"m": MemberFactory(email_status=EmailStatus.BOUNCED)},
        lambda o, by: members.member_email_status_clear(member=o["m"], by=by, reason="fixed"),
        lambda o: Member.objects.get(pk=o["m"].pk).email_status != EmailStatus.BOUNCED,
    ),
    "API client create": Act(
        dict,
        lambda o, by: api_client_create(name="crm", scopes=["members:write"], by=by),
        lambda o: ApiClient.objects.exists(),
    ),
}
MAY = {
    "Viewer": set(),
    "Editor": {"create", "edit", "submit"},
    "Approver": {"approve", "schedule", "pause", "resume", "cancel", "resend"},
    "Administrator": {"policy change", "address clear", "API client create"},
}


def test_every_act_is_someones():
    assert set().union(*MAY.values()) == set(ACTS)


@pytest.mark.parametrize("role", list(MAY))
@pytest.mark.parametrize("act", list(ACTS))
def test_each_role_against_the_services(role, act):
    case = ACTS[act]
    objs = case.setup()
    user = holder("staff", role)
    if act in MAY[role]:
        case.call(objs, user)
        assert case.done(objs)
    else:
        with pytest.raises(PermissionRefused):
            case.call(objs, user)
        assert not case.done(objs)
