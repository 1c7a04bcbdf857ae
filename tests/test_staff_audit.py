"""The staff audit trail: every staff action and download is an entry (who, what, which
record, the diff, the hashed address, the path), a refused one is none, and nobody can
change or delete an entry, at any level."""

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import JurisdictionPolicy, Member, PolicyMode
from accounts.permissions import PermissionRefused
from audit import middleware
from audit.models import Action, StaffAction
from audit.services import staff_action_record
from campaigns.models import (
    Campaign,
    CampaignState,
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeText,
    NoticeVersion,
)
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.lifecycle import TransitionError
from campaigns.services.sending import campaign_send_chunk
from config.hashing import hash_ip
from tests.factories import CAMPAIGN_EDITOR, MemberFactory, campaign, notice_version, staff_user
from tests.test_staff_permissions import SERVICES

pytestmark = pytest.mark.django_db
S = CampaignState
# The address the staff member's browser is at, as the test client presents it.
ADDRESS = "203.0.113.9"


@pytest.fixture(autouse=True)
def _only_this_tests_entries(db):
    """Entries written before the test (the migrations' role sync, as the system) are
    not this test's: every helper below reads only those after this point."""
    global FIRST_ID
    FIRST_ID = (StaffAction.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1


FIRST_ID = 1


def recorded():
    return StaffAction.objects.filter(id__gte=FIRST_ID)


@pytest.fixture
def ada(django_user_model):
    """An administrator: every page and action is open to her."""
    return django_user_model.objects.create_superuser("ada", "ada@example.com", "pw-ada-1")


def browser(user: User | None = None) -> Client:
    client = Client(REMOTE_ADDR=ADDRESS)
    if user is not None:
        client.force_login(user)
    return client


@contextmanager
def in_request(path: str = "/console/somewhere/", user: User | None = None) -> Iterator[None]:
    """Run a service as a console or admin view would: inside a request (from ADDRESS)."""
    request = RequestFactory().post(path, REMOTE_ADDR=ADDRESS)
    if user is not None:
        request.user = user
    token = middleware._current.set(request)
    try:
        yield
    finally:
        middleware._current.reset(token)


def entries(action: Action | str) -> list[StaffAction]:
    return list(recorded().filter(action=action).order_by("id"))


def only(action: Action | str) -> StaffAction:
    [entry] = entries(action)
    return entry


def assert_from(entry: StaffAction, path: str) -> None:
    assert entry.ip_hash == hash_ip(ADDRESS) != ""
    assert entry.path == path


def assert_on(entry: StaffAction, obj) -> None:
    assert (entry.target_type, entry.target_id, entry.target_label) == (
        obj._meta.label_lower,
        str(obj.pk),
        str(obj),
    )


# --- Every service that acts for staff records what it did --------------------------------

# What each service of tests/test_staff_permissions.py SERVICES is called in the trail.
SERVICE_ACTIONS = {
    "lifecycle.campaign_create": Action.CREATE,
    "lifecycle.campaign_edit": Action.EDIT,
    "lifecycle.campaign_submit": Action.SUBMIT,
    "lifecycle.campaign_approve": Action.APPROVE,
    "lifecycle.campaign_reject": Action.SEND_BACK,
    "lifecycle.campaign_schedule": Action.SCHEDULE,
    "lifecycle.campaign_pause": Action.PAUSE,
    "lifecycle.campaign_resume": Action.RESUME,
    "lifecycle.campaign_cancel": Action.CANCEL,
    "notices.notice_version_copy": Action.NOTICE_VERSION_COPY,
    "notices.notice_send_test": Action.TEST_SEND,
    "reconcile.delivery_resend": Action.RESEND,
    "reconcile.deliveries_resend": Action.RESEND,
    "reconcile.deliveries_give_up": Action.GIVE_UP,
    "clients.api_client_create": Action.API_CLIENT_CREATE,
    "clients.api_client_revoke": Action.API_CLIENT_REVOKE,
    "webhooks.webhook_endpoint_create": Action.WEBHOOK_ENDPOINT_CREATE,
    "webhooks.webhook_endpoint_deactivate": Action.WEBHOOK_ENDPOINT_DEACTIVATE,
    "webhooks.webhook_deliveries_replay": Action.WEBHOOK_REPLAY,
    "receipts.receipts_retry": Action.RECEIPT_RESEND,
    "members.member_email_status_clear": Action.ADDRESS_CLEAR,
    "members.member_address_change": Action.ADDRESS_CHANGE,
    "erasure.member_erase": Action.MEMBER_ERASE,
    "policies.purpose_create": Action.PURPOSE_CREATE,
    "policies.policy_set_mode": Action.POLICY_CHANGE,
    "gates.gate_define": Action.GATE_DEFINE,
    "gates.gate_change": Action.GATE_CHANGE,
    "gates.gate_propose": Action.GATE_PROPOSE,
    # Opening switches the policy too: the confirmer's policy change is its own entry.
    "gates.gate_open": (Action.POLICY_CHANGE, Action.GATE_OPEN),
    "gates.gate_close": Action.GATE_WITHDRAW,  # a proposed gate: the proposal withdrawn
    "gates.consumer_confirmation_record": Action.GATE_CONSUMERS_CONFIRM,
}


def test_every_service_that_acts_for_staff_has_its_entry():
    assert set(SERVICE_ACTIONS) == set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_staff_service_records_one_entry_of_its_action(name):
    service = SERVICES[name]
    objs = service.setup()
    holder = staff_user("holder", service.perm)
    before = StaffAction.objects.count()
    with in_request("/console/act/"):
        service.call(objs, holder)
    expected = SERVICE_ACTIONS[name]
    actions = expected if isinstance(expected, tuple) else (expected,)
    made = list(StaffAction.objects.filter(id__gt=_last_id(before)).order_by("id"))
    assert [(e.action, e.by, e.username) for e in made] == [(a, holder, "holder") for a in actions]
    for entry in made:
        assert_from(entry, "/console/act/")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_refused_service_records_nothing(name):
    service = SERVICES[name]
    objs = service.setup()
    stranger = staff_user("stranger")
    before = StaffAction.objects.count()
    with pytest.raises(PermissionRefused), in_request():
        service.call(objs, stranger)
    assert StaffAction.objects.count() == before


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.system))
def test_the_system_acting_is_no_staff_action(name):
    """Beat, the circuit breaker, workers: their moves are in the campaign's timeline."""
    service = SERVICES[name]
    objs = service.setup()
    before = StaffAction.objects.count()
    service.call(objs, None)
    assert StaffAction.objects.count() == before


def _last_id(count_before: int) -> int:
    ids = StaffAction.objects.order_by("id").values_list("id", flat=True)
    return ids[count_before - 1] if count_before else 0


# --- What each entry says -----------------------------------------------------------------


def test_creating_a_campaign_in_the_admin_records_what_it_was_made_with(ada):
    version = notice_version()
    response = browser(ada).post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "UK notice",
            "notice_version": version.pk,
            "jurisdictions": ["UK"],
            "countries": "gb",
            "locales": "",
            "starts_at_0": "2030-01-01",
            "starts_at_1": "09:00:00",
            "throttle_per_minute": "6000",
            "max_reminders": "0",
            "transitions-TOTAL_FORMS": "0",
            "transitions-INITIAL_FORMS": "0",
            "variants-TOTAL_FORMS": "0",
            "variants-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    entry = only(Action.CREATE)
    assert entry.by == ada
    assert_on(entry, Campaign.objects.get())
    assert entry.changes["notice_version"] == [None, str(version)]
    assert entry.changes["countries"] == [None, ["GB"]]
    assert_from(entry, "/admin/campaigns/campaign/add/")


def test_an_edit_records_the_fields_it_changed_old_and_new():
    editor = staff_user("erin", *CAMPAIGN_EDITOR)
    draft = campaign(state=S.DRAFT, name="Spring", throttle_per_minute=600)
    with in_request("/console/campaigns/1/edit/"):
        lifecycle.campaign_edit(
            campaign=draft, by=editor, name="Spring notice", throttle_per_minute=600
        )
    entry = only(Action.EDIT)
    assert entry.changes == {"name": ["Spring", "Spring notice"]}  # the throttle did not change
    assert entry.by == editor and entry.target_label == "Spring notice"


def test_an_edit_after_submission_says_it_sent_the_campaign_back_to_draft():
    editor = staff_user("erin", *CAMPAIGN_EDITOR)
    submitted = campaign(state=S.AWAITING_APPROVAL, name="Spring")
    lifecycle.campaign_edit(campaign=submitted, by=editor, name="Spring notice")
    entry = only(Action.EDIT)
    assert entry.detail == {"back_to_draft": True}
    assert Campaign.objects.get(pk=submitted.pk).state == S.DRAFT


def test_an_edit_that_changes_nothing_records_nothing():
    editor = staff_user("erin", *CAMPAIGN_EDITOR)
    draft = campaign(state=S.DRAFT, name="Spring")
    lifecycle.campaign_edit(campaign=draft, by=editor, name="Spring")
    assert entries(Action.EDIT) == []


# The console's workflow buttons: (button, the campaign's state before, the trail's action).
BUTTONS = [
    ("submit", S.DRAFT, Action.SUBMIT),
    ("approve", S.AWAITING_APPROVAL, Action.APPROVE),
    ("send_back", S.AWAITING_APPROVAL, Action.SEND_BACK),
    ("schedule", S.APPROVED, Action.SCHEDULE),
    ("pause", S.SENDING, Action.PAUSE),
    ("resume", S.PAUSED, Action.RESUME),
    ("cancel", S.SENDING, Action.CANCEL),
]


@pytest.mark.parametrize(("button", "state", "action"), BUTTONS)
def test_each_workflow_button_records_the_move_on_the_campaign(ada, button, state, action):
    writer = staff_user("writer")
    subject = campaign(
        state=state, last_edited_by=writer, approved_by=writer, starts_at=timezone.now()
    )
    response = browser(ada).post(
        f"/console/campaigns/{subject.pk}/act/{button}/",
        {"reason": "seen by legal", "starts_at": "2030-01-01 09:00"},
    )
    assert response.status_code == 302
    entry = only(action)
    subject.refresh_from_db()
    assert entry.by == ada
    assert_on(entry, subject)
    assert (entry.detail["from"], entry.detail["to"]) == (state, subject.state)
    assert_from(entry, f"/console/campaigns/{subject.pk}/act/{button}/")
    if button in ("pause", "cancel", "send_back"):
        assert entry.detail["note"] == "seen by legal"
    if button == "schedule":
        assert entry.detail["starts_at"].startswith("2030-01-01T09:00")


@pytest.mark.parametrize(
    ("button", "action"), [("resend_unknown", Action.RESEND), ("give_up_unknown", Action.GIVE_UP)]
)
def test_deciding_about_unknown_deliveries_records_how_many(ada, button, action):
    subject = campaign(state=S.SENDING, throttle_per_minute=60_000)
    for member in MemberFactory.create_batch(3):
        Delivery.objects.create(campaign=subject, member=member, status=DeliveryStatus.UNKNOWN)
    browser(ada).post(f"/console/campaigns/{subject.pk}/act/{button}/")
    entry = only(action)
    assert_on(entry, subject)
    assert entry.detail == {"deliveries": 3, "campaigns": [subject.pk]}
    assert_from(entry, f"/console/campaigns/{subject.pk}/act/{button}/")


def test_a_refused_move_records_nothing(ada):
    """A TransitionError (approving a draft) and four eyes (approving one's own edit)."""
    draft = campaign(state=S.DRAFT, last_edited_by=ada)
    client = browser(ada)
    client.post(f"/console/campaigns/{draft.pk}/act/approve/")
    with pytest.raises(TransitionError):
        lifecycle.campaign_approve(campaign=draft, by=ada)
    own = campaign(state=S.AWAITING_APPROVAL, last_edited_by=ada)
    with pytest.raises(TransitionError):
        lifecycle.campaign_approve(campaign=own, by=ada)
    assert Campaign.objects.filter(state=S.APPROVED).count() == 0
    assert entries(Action.APPROVE) == []


def test_a_policy_change_in_the_admin_records_the_mode_old_and_new(ada, purpose):
    policy = purpose.policies.get(jurisdiction="US")
    old = policy.mode
    new = PolicyMode.OPT_OUT if old != PolicyMode.OPT_OUT else PolicyMode.OPT_IN
    url = reverse("admin:accounts_jurisdictionpolicy_change", args=[policy.pk])
    response = browser(ada).post(
        url,
        {"mode": new, "changes-TOTAL_FORMS": "0", "changes-INITIAL_FORMS": "0"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = only(Action.POLICY_CHANGE)
    assert entry.changes == {"mode": [old, new]}
    assert_on(entry, JurisdictionPolicy.objects.get(pk=policy.pk))
    assert_from(entry, url)


def test_clearing_an_address_records_the_status_and_the_reason():
    clearer = staff_user("cleo", "accounts.clear_address")
    member = MemberFactory(email_status="bounced")
    with in_request():
        from accounts.services.members import member_email_status_clear

        member_email_status_clear(member=member, by=clearer, reason="mailbox fixed")
    entry = only(Action.ADDRESS_CLEAR)
    assert entry.changes == {"email_status": ["bounced", "ok"]}
    assert entry.detail == {"reason": "mailbox fixed"}
    assert (entry.target_type, entry.target_label) == ("accounts.member", member.external_id)
    assert member.email not in json.dumps([entry.changes, entry.detail, entry.target_label])


def test_erasing_a_member_records_who_was_erased_by_external_id_only(ada):
    from accounts.models import Source
    from campaigns.services.erasure import member_erase

    member = MemberFactory()
    email = member.email
    with in_request():
        member_erase(member=member, source=Source.ADMIN, by=ada)
    entry = only(Action.MEMBER_ERASE)
    assert (entry.target_id, entry.target_label) == (str(member.pk), member.external_id)
    assert email not in json.dumps([entry.changes, entry.detail, entry.target_label])
    member_erase(member=Member.objects.get(pk=member.pk), source=Source.ADMIN, by=ada)
    assert len(entries(Action.MEMBER_ERASE)) == 1  # erased already: nothing done, nothing said


def test_a_test_send_records_the_version_and_locale_once_sent():
    tester = staff_user("tess", "campaigns.send_test_notice")
    version = notice_version()
    from campaigns.services.notices import notice_send_test

    with in_request():
        notice_send_test(version=version, locale="de", to="tess@example.com", by=tester)
    assert len(mail.outbox) == 1
    entry = only(Action.TEST_SEND)
    assert_on(entry, version)
    assert entry.detail == {"locale": "de"}


def test_an_api_client_entry_keeps_its_prefix_never_its_key():
    from api.services.clients import api_client_create

    maker = staff_user("mo", "api.manage_apiclient")
    client, key = api_client_create(name="crm", scopes=["members:write"], by=maker)
    entry = only(Action.API_CLIENT_CREATE)
    assert entry.detail["key_prefix"] == client.key_prefix
    assert key not in json.dumps([entry.detail, entry.changes, entry.target_label])


def test_a_webhook_endpoint_entry_never_keeps_its_secret():
    from api.services.clients import api_client_create
    from api.services.webhooks import webhook_endpoint_create

    maker = staff_user("mo", "api.manage_apiclient")
    client, _key = api_client_create(name="crm", scopes=["members:write"], by=None)
    endpoint, secret = webhook_endpoint_create(client=client, url="https://crm.example/", by=maker)
    entry = only(Action.WEBHOOK_ENDPOINT_CREATE)
    assert_on(entry, endpoint)
    assert entry.detail["url"] == "https://crm.example/"
    assert secret not in json.dumps([entry.detail, entry.changes, entry.target_label])


# --- What the admin writes itself ---------------------------------------------------------


def test_a_notice_made_in_the_admin_is_a_create(ada):
    response = browser(ada).post(
        reverse("admin:campaigns_notice_add"),
        {
            "title": "Training notice",
            "created_at_0": "2026-12-01",
            "created_at_1": "09:00:00",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = only(Action.CREATE)
    assert_on(entry, Notice.objects.get())
    assert entry.changes["title"] == [None, "Training notice"]
    assert_from(entry, "/admin/campaigns/notice/add/")


def test_a_notice_text_edited_in_the_admin_records_its_diff(ada):
    version = notice_version(locales=("en",))
    text = version.texts.get()
    url = reverse("admin:campaigns_noticeversion_change", args=[version.pk])
    response = browser(ada).post(
        url,
        {
            "notice": version.notice_id,
            "default_locale": "en",
            "effective_date": "2027-03-01",
            "objection_deadline": "2027-02-15",
            "texts-TOTAL_FORMS": "1",
            "texts-INITIAL_FORMS": "1",
            "texts-0-id": text.pk,
            "texts-0-version": version.pk,
            "texts-0-locale": "en",
            "texts-0-subject": "A clearer subject",
            "texts-0-body_markdown": text.body_markdown,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    entry = only(Action.EDIT)
    assert_on(entry, NoticeText.objects.get(pk=text.pk))
    assert entry.changes == {"subject": [text.subject, "A clearer subject"]}
    assert_from(entry, url)
    assert not NoticeVersion.objects.exclude(pk=version.pk).exists()


def test_a_member_edited_in_the_admin_records_fields_but_not_the_address(ada):
    member = MemberFactory(country="DE", locale="de")
    url = reverse("admin:accounts_member_change", args=[member.pk])
    response = browser(ada).post(
        url,
        {
            "external_id": member.external_id,
            "email": "moved@example.com",
            "locale": "fr",
            "country": "FR",
            "person_key": member.person_key,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    edit, change = only(Action.EDIT), only(Action.ADDRESS_CHANGE)
    assert edit.changes == {"locale": ["de", "fr"], "country": ["DE", "FR"]}
    assert_on(change, Member.objects.get(pk=member.pk))
    assert "moved@example.com" not in json.dumps([edit.changes, change.detail, change.changes])
    assert_from(edit, url)


def test_lifting_a_login_lockout_records_the_username_and_hashed_address(ada):
    attempt = AccessAttempt.objects.create(
        username="mallory", ip_address="198.51.100.7", failures_since_start=5,
        user_agent="x", get_data="", post_data="", http_accept="", path_info="/admin/login/",
    )  # fmt: skip
    url = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
    response = browser(ada).post(url, {"post": "yes"})
    assert response.status_code == 302
    entry = only(Action.LOCKOUT_LIFT)
    assert entry.detail == {
        "username": "mallory",
        "address_hash": hash_ip("198.51.100.7"),
        "failures": 5,
    }
    assert "198.51.100.7" not in json.dumps(entry.detail)
    assert_from(entry, url)


# --- Downloads and reading members' data ---------------------------------------------------


def test_the_not_reached_csv_is_recorded_before_it_streams(ada):
    subject = campaign(state=S.SENDING)
    url = reverse("admin:campaigns_campaign_not_reached", args=[subject.pk])
    response = browser(ada).get(url)
    assert response.status_code == 200
    entry = only(Action.DOWNLOAD)  # recorded before a byte of the body was read
    assert_on(entry, subject)
    assert entry.detail == {
        "file": f"campaign-{subject.pk}-not-reached.csv",
        "what": "members not reached",
    }
    assert_from(entry, url)
    b"".join(response.streaming_content)


def test_reading_the_outbox_is_recorded(ada, settings, tmp_path):
    settings.EMAIL_BACKEND = "config.mail.OutboxBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    MemberFactory()
    subject = campaign(state=S.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=subject)
    campaign_send_chunk(campaign_id=subject.pk)
    [name] = [p.name for p in tmp_path.glob("*.eml")]
    client = browser(ada)
    client.get(reverse("outbox_list"))
    client.get(reverse("outbox_message", args=[name]))
    listing, message = entries(Action.OUTBOX_READ)
    assert listing.detail == {"page": 1, "messages": 1}
    assert message.detail == {"file": name}
    assert_from(message, reverse("outbox_message", args=[name]))


def test_a_suppression_export_by_command_is_recorded_as_the_system(purpose, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["manage.py", "export_suppressions", "--purpose", "x"])
    out = tmp_path / "out.csv"
    call_command("export_suppressions", purpose=purpose.slug, output=str(out), stderr=io.StringIO())
    entry = only(Action.EXPORT)
    assert entry.by is None and entry.username == ""
    assert_on(entry, purpose)
    assert entry.detail == {
        "via": "manage.py export_suppressions",
        "what": "suppression list",
        "format": "csv",
        "file": str(out),
    }
    assert (entry.ip_hash, entry.path) == ("", "")


def test_printing_preference_links_is_recorded_without_the_links(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["manage.py", "preference_links"])
    members = MemberFactory.create_batch(2)
    out = io.StringIO()
    call_command("preference_links", *[m.external_id for m in members], stdout=out)
    entry = only(Action.EXPORT)
    assert entry.by is None
    assert entry.detail == {
        "via": "manage.py preference_links",
        "what": "preference links",
        "members": 2,
    }
    link = out.getvalue().split()[1]
    assert link not in json.dumps([entry.detail, entry.changes, entry.target_label, entry.path])


# --- Signing in and out -------------------------------------------------------------------


def test_signing_in_and_out_is_recorded_with_the_address(ada):
    client = browser()
    client.post("/console/login/", {"username": "ada", "password": "pw-ada-1"})
    entry = only(Action.LOGIN)
    assert (entry.by, entry.username) == (ada, "ada")
    assert_from(entry, "/console/login/")
    client.post("/console/logout/")
    assert only(Action.LOGOUT).by == ada


def test_a_failed_sign_in_keeps_the_username_typed_and_never_the_password(ada):
    client = browser()
    client.post("/console/login/?next=/console/", {"username": "ghost", "password": "s3cret-guess"})
    client.post("/console/login/", {"username": "ada", "password": "wrong-guess-2"})
    unknown, known = entries(Action.LOGIN_FAILED)
    assert (unknown.by, unknown.username) == (None, "ghost")
    assert (known.by, known.username) == (ada, "ada")
    assert_from(unknown, "/console/login/")  # the path, never its query string
    stored = json.dumps(list(StaffAction.objects.values()), default=str)
    assert "s3cret-guess" not in stored and "wrong-guess-2" not in stored


# --- Role changes -------------------------------------------------------------------------


def test_groups_given_in_the_admin_are_a_role_change(ada):
    editors = Group.objects.get(name="Editor")
    bob = User.objects.create_user("bob", "bob@example.com", is_staff=True)
    url = reverse("admin:auth_user_change", args=[bob.pk])
    response = browser(ada).post(
        url,
        {
            "username": "bob",
            "email": "bob@example.com",
            "is_active": "on",
            "is_staff": "on",
            "groups": [editors.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "09:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    made, entry = roles_of(bob)  # made staff by create_user, then the admin's change
    assert made.changes == {"is_staff": [None, True], "is_superuser": [None, False]}
    assert entry.by == ada
    assert entry.changes == {"groups": [[], ["Editor"]]}
    assert_from(entry, url)


def test_flags_and_permissions_changed_are_role_changes(ada):
    bob = User.objects.create_user("bob")  # no role yet: nothing to record
    assert roles_of(bob) == []
    with in_request(user=ada):
        bob.is_staff = True
        bob.save()
        bob.user_permissions.add(*_perms("campaigns.view_campaign"))
        bob.user_permissions.remove(*_perms("campaigns.view_campaign"))
    flags, added, removed = roles_of(bob)
    assert flags.changes == {"is_staff": [False, True]} and flags.by == ada
    assert added.changes == {"user_permissions": [[], ["campaigns.view_campaign"]]}
    assert removed.changes == {"user_permissions": [["campaigns.view_campaign"], []]}


def test_a_role_given_by_a_command_is_recorded_as_the_system(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["manage.py", "assign_role", "bob", "Editor"])
    editors = Group.objects.get(name="Editor")
    bob = User.objects.create_user("bob")
    editors.user_set.add(bob)  # from the group's side, as a command may
    entry = only(Action.ROLE_CHANGE)
    assert (entry.by, entry.target_id) == (None, str(bob.pk))
    assert entry.changes == {"groups": [[], ["Editor"]]}
    assert entry.detail == {"via": "manage.py assign_role"}


def test_what_a_role_allows_changing_is_a_role_change():
    editors = Group.objects.create(name="Campaign editors")
    editors.permissions.add(*_perms("campaigns.approve_campaign"))
    entry = only(Action.ROLE_CHANGE)
    assert_on(entry, editors)
    assert entry.changes == {"permissions": [[], ["campaigns.approve_campaign"]]}


def roles_of(user: User) -> list[StaffAction]:
    return list(
        recorded()
        .filter(action=Action.ROLE_CHANGE, target_type="auth.user", target_id=str(user.pk))
        .order_by("id")
    )


def _perms(*names: str):
    from django.contrib.auth.models import Permission

    return [
        Permission.objects.get(content_type__app_label=n.split(".")[0], codename=n.split(".")[1])
        for n in names
    ]


def test_two_factor_entries_can_be_recorded_for_the_sign_in_flow(ada):
    """The 2FA pages (another branch) call these; their names and labels exist."""
    with in_request("/console/2fa/setup/"):
        staff_action_record(by=ada, action=StaffAction.Action.TWO_FACTOR_SETUP)
        staff_action_record(
            by=ada, action=StaffAction.Action.TWO_FACTOR_RECOVERY_CODES, detail={"codes": 10}
        )
    setup, codes = StaffAction.objects.order_by("id").filter(by=ada)
    assert (setup.get_action_display(), codes.detail) == (
        "Set up two-factor authentication",
        {"codes": 10},
    )
    assert_from(setup, "/console/2fa/setup/")


# --- Nobody changes or deletes an entry -----------------------------------------------------


@pytest.fixture
def entry(ada) -> StaffAction:
    return staff_action_record(by=ada, action=Action.EXPORT, detail={"file": "x.csv"})


def test_the_model_refuses_to_change_or_delete_an_entry(entry):
    entry.detail = {"file": "innocent.csv"}
    with pytest.raises(TypeError, match="staff audit trail is append-only"):
        entry.save()
    with pytest.raises(TypeError, match="append-only"):
        entry.delete()


def test_querysets_refuse_to_update_or_delete(entry):
    with pytest.raises(TypeError, match="append-only"):
        StaffAction.objects.filter(pk=entry.pk).update(username="someone else")
    with pytest.raises(TypeError, match="append-only"):
        StaffAction.objects.all().delete()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_staffaction SET username = 'someone else'",
        "DELETE FROM audit_staffaction",
    ],
)
def test_the_database_refuses_raw_sql_updates_and_deletes(entry, statement):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert StaffAction.objects.get(pk=entry.pk).username == "ada"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_truncate(entry):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE audit_staffaction CASCADE")
    assert StaffAction.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_committed_entries_are_refused_updates_too(entry):
    """Outside a test transaction, as in production: the trigger fires on committed rows."""
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_staffaction SET username = 'someone else'")
    assert StaffAction.objects.get(pk=entry.pk).username == "ada"


def test_the_admin_lets_nobody_add_change_or_delete_an_entry(entry, ada):
    client = browser(ada)
    change = reverse("admin:audit_staffaction_change", args=[entry.pk])
    delete = reverse("admin:audit_staffaction_delete", args=[entry.pk])
    assert client.get(change).status_code == 200  # read only
    assert client.post(change, {"username": "someone else"}).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:audit_staffaction_add")).status_code == 403
    listing = client.post(
        reverse("admin:audit_staffaction_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert listing.status_code in (200, 302)
    assert StaffAction.objects.get(pk=entry.pk).username == "ada"
