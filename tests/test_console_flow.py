"""Creating and editing a campaign in the console's four steps: every step keeps what was
entered, bad input is shown next to its field and creates nothing, and saving goes
through the lifecycle services (permission, last editor, back to draft)."""

import re
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import EmailStatus
from campaigns.models import Campaign, CampaignState, CampaignTransition
from campaigns.selectors import audience_preview
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    campaign,
    notice_version,
    staff_user,
)

pytestmark = pytest.mark.django_db
S = CampaignState
NEW = "/console/campaigns/new/"
COUNT = "/console/campaigns/new/count/"


@pytest.fixture
def editor():
    return staff_user("erin", *CAMPAIGN_EDITOR)


@pytest.fixture
def version():
    return notice_version()


def _client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _post(client: Client, url: str, data: dict, go: str):
    """POST one step as the browser does: the page's CSRF token, every value, a button."""
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else None
    if token is None:
        client.get(url)
        token = client.cookies["csrftoken"].value
    return client.post(url, {**data, "go": go, "csrfmiddlewaretoken": token})


def _carried(html: str) -> dict[str, list[str]]:
    """The values a step page carries in its hidden inputs (name -> values)."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html):
        if name != "csrfmiddlewaretoken":
            found.setdefault(name, []).append(value)
    return found


START = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
ENTERED = {
    "name": "UK and EU re-notification",
    "jurisdictions": ["UK", "EU"],
    "countries": "gb, ie",
    "locales": "en, de",
    "members_created_after": "2020-01-01T00:00",
    "members_created_before": "",
    "purpose": "",
    "purpose_state": "",
    "only_not_acknowledged": "on",
    "starts_at": timezone.localtime(START).strftime("%Y-%m-%dT%H:%M"),
    "window_ends_at": "",
    "throttle_per_minute": "1200",
    "remind_after_days": "7",
    "max_reminders": "2",
}


def _walk(client: Client, version, url: str = NEW, **changes):
    """Every step in order, as a person would: each page's hidden values carried to
    the next POST, plus that step's own inputs. Returns the review page."""
    entered = {**ENTERED, "notice_version": str(version.pk), **changes}
    page = client.get(url)
    assert page.status_code == 200
    steps = [
        ("version", ["name", "notice_version"]),
        ("audience", [*[k for k in ENTERED if k not in ("name",)][:8]]),
        ("schedule", ["starts_at", "window_ends_at", "throttle_per_minute", "remind_after_days",
                      "max_reminders"]),
    ]  # fmt: skip
    nxt = {"version": "audience", "audience": "schedule", "schedule": "review"}
    for step, fields in steps:
        data: dict = _carried(page.content.decode())
        for name in fields:
            data[name] = entered[name]
        if step == "audience" and not entered.get("only_not_acknowledged"):
            data.pop("only_not_acknowledged", None)
        page = _post(client, url, {**data, "step": step}, nxt[step])
        assert page.status_code == 200, page.content.decode()[:2000]
    return page


def _save(client: Client, review, go: str, url: str = NEW):
    return _post(client, url, {**_carried(review.content.decode()), "step": "review"}, go)


def test_an_editor_walks_the_flow_and_saves_a_draft_with_what_was_entered(editor, version):
    client = _client(editor)
    review = _walk(client, version)
    body = review.content.decode()
    assert "UK and EU re-notification" in body and "Submit for approval" in body
    assert not Campaign.objects.exists()  # nothing is created before saving

    response = _save(client, review, "draft")

    saved = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/console/campaigns/{saved.pk}/"
    assert saved.state == S.DRAFT and saved.last_edited_by == editor
    assert (saved.name, saved.notice_version) == ("UK and EU re-notification", version)
    assert saved.jurisdictions == ["UK", "EU"]
    assert saved.countries == ["GB", "IE"] and saved.locales == ["de", "en"]
    assert saved.members_created_after == datetime(
        2020, 1, 1, tzinfo=timezone.get_current_timezone()
    )
    assert saved.members_created_before is None and saved.only_not_acknowledged is True
    assert saved.starts_at == START and saved.throttle_per_minute == 1200
    assert (saved.remind_after_days, saved.max_reminders) == (7, 2)


def test_submitting_from_the_review_step_asks_for_approval(editor, version):
    client = _client(editor)
    response = _save(client, _walk(client, version), "submit")
    saved = Campaign.objects.get()
    assert response.status_code == 302
    assert saved.state == S.AWAITING_APPROVAL
    assert CampaignTransition.objects.get().by == editor


@pytest.mark.parametrize(
    ("step", "field", "value", "error"),
    [
        ("version", "name", "", "This field is required."),
        ("version", "notice_version", "999999", "Select a valid choice."),
        ("audience", "countries", "GB, Atlantis", "Unknown country code: Atlantis."),
        ("audience", "members_created_after", "last tuesday", "Enter a valid date/time."),
        ("schedule", "throttle_per_minute", "0", "At least 1 message a minute."),
        ("schedule", "starts_at", "2001-01-01T09:00", "Must be in the future."),
        ("schedule", "max_reminders", "0", "At least 1 when reminding"),
    ],
)
def test_bad_input_on_a_step_is_shown_next_to_its_field_and_creates_nothing(
    editor, version, step, field, value, error
):
    client = _client(editor)
    if step == "version":
        page = _post(client, NEW, {**ENTERED, "notice_version": version.pk, "step": step,
                                   field: value}, "audience")  # fmt: skip
    else:
        review = _walk(client, version)
        data = {**_carried(review.content.decode()), field: value, "step": step}
        page = _post(client, NEW, data, "review")
    body = page.content.decode()
    assert page.status_code == 400
    assert f'name="step" value="{step}"' in body  # the step with the error is shown
    assert error in body
    # Next to its field: the error list sits right before the input it is about.
    assert re.search(rf'{re.escape(error)}.*?name="{field}"', body, re.S)
    assert not Campaign.objects.exists()


def test_going_back_keeps_what_was_entered(editor, version):
    client = _client(editor)
    review = _walk(client, version)
    back = _post(client, NEW, {**_carried(review.content.decode()), "step": "review"}, "audience")
    body = back.content.decode()
    assert 'name="step" value="audience"' in body
    assert 'name="countries" value="gb, ie"' in body  # as typed
    assert 'value="UK" id="id_jurisdictions_0" checked' in body
    assert 'value="EEA" id="id_jurisdictions_2">' in body
    assert (
        'name="only_not_acknowledged"' in body and 'id="id_only_not_acknowledged" checked' in body
    )
    assert '<input type="hidden" name="throttle_per_minute" value="1200"' in body


def test_a_refused_submission_leaves_no_draft(version):
    adder = staff_user("ada", "campaigns.add_campaign")  # may create, may not submit
    client = _client(adder)
    response = _save(client, _walk(client, version), "submit")
    assert response.status_code == 403
    assert "Not saved: you do not have the permission" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_audience_step_counts_reachable_and_why_not(editor, version):
    MemberFactory(country="GB", locale="en")
    MemberFactory(country="GB", locale="en", email_status=EmailStatus.BOUNCED)
    MemberFactory(country="US", locale="en")
    client = _client(editor)
    data = {**ENTERED, "notice_version": version.pk, "step": "audience", "countries": "",
            "locales": "", "members_created_after": "", "only_not_acknowledged": ""}  # fmt: skip
    page = _post(client, NEW, data, "audience")  # the "Count" button
    body = page.content.decode()
    assert page.status_code == 200
    assert "<strong>1</strong> reachable by email of <strong>2</strong> selected" in body
    assert "address bounced" in body


def test_the_live_count_equals_the_audience_preview(editor, version, purpose):
    for country, locale in [("GB", "en"), ("DE", "de"), ("FR", "fr"), ("US", "en")]:
        MemberFactory(country=country, locale=locale)
    MemberFactory(country="DE", locale="de", email_status=EmailStatus.COMPLAINED)
    MemberFactory(country="GB", locale="en", unsubscribed_at=timezone.now())
    client = _client(editor)
    filter_sets = [
        ({}, {}),
        ({"jurisdictions": ["EU"]}, {"jurisdictions": ["EU"]}),
        ({"locales": "de, fr", "countries": "de"}, {"locales": ["de", "fr"], "countries": ["DE"]}),
        ({"purpose": purpose.pk, "purpose_state": "out"},
         {"purpose": purpose, "purpose_state": "out"}),
        ({"only_not_acknowledged": "on", "notice_version": version.pk},
         {"only_not_acknowledged": True, "notice_version": version}),
    ]  # fmt: skip
    for query, fields in filter_sets:
        expected = audience_preview(campaign=Campaign(**fields))
        answer = client.get(COUNT, query).json()
        assert answer["targeted"] == expected.targeted
        assert answer["reachable"] == expected.reachable
        assert answer["unreachable"] == expected.unreachable
        assert answer["by_jurisdiction"] == expected.by_jurisdiction
        assert answer["by_locale"] == expected.by_locale


def test_the_live_count_is_one_grouped_query_whatever_the_audience(
    editor, version, purpose, django_assert_num_queries
):
    client = _client(editor)
    query = {"jurisdictions": ["UK", "EU"], "purpose": purpose.pk, "purpose_state": "out",
             "only_not_acknowledged": "on", "notice_version": version.pk}  # fmt: skip
    client.get(COUNT, query)  # warms the per-process copies (purpose policies)
    # Session, user, user's and group permissions, the purpose (the field, then the
    # model's check of the key), the notice version, the purpose's policies, the count.
    with django_assert_num_queries(9):
        small = client.get(COUNT, query).json()
    MemberFactory.create_batch(40, country="DE", locale="de")
    with django_assert_num_queries(9):
        large = client.get(COUNT, query).json()
    assert (small["targeted"], large["targeted"]) == (0, 40)


def test_a_bad_filter_gets_a_400_with_the_field_named(editor):
    client = _client(editor)
    response = client.get(COUNT, {"countries": "Narnia", "only_not_acknowledged": "on"})
    assert response.status_code == 400
    assert response.json()["errors"]["countries"] == ["Unknown country code: Narnia."]
    response = client.get(COUNT, {"only_not_acknowledged": "on", "notice_version": "x"})
    assert response.json() == {"errors": {"notice_version": ["Pick a notice version first."]}}


def test_editing_a_submitted_campaign_sends_it_back_to_draft(version):
    author = staff_user("erin", *CAMPAIGN_EDITOR)
    colleague = staff_user("eve", *CAMPAIGN_EDITOR)
    submitted = campaign(version=version, state=S.AWAITING_APPROVAL, last_edited_by=author,
                         jurisdictions=["UK"], throttle_per_minute=600)  # fmt: skip
    client = _client(colleague)
    url = f"/console/campaigns/{submitted.pk}/edit/"
    page = client.get(url)
    assert "sends it back to draft" in page.content.decode()
    review = _walk(client, version, url=url, name="Renamed", jurisdictions=["UK"])
    response = _save(client, review, "draft", url=url)
    submitted.refresh_from_db()
    assert response.status_code == 302
    assert submitted.state == S.DRAFT and submitted.name == "Renamed"
    assert submitted.last_edited_by == colleague
    back = CampaignTransition.objects.get()
    assert (back.from_state, back.to_state) == (S.AWAITING_APPROVAL, S.DRAFT)


def test_saving_an_edit_that_changes_nothing_keeps_the_approval(version):
    approved_by = staff_user("abe", *CAMPAIGN_APPROVER)
    editor = staff_user("erin", *CAMPAIGN_EDITOR)
    approved = campaign(version=version, state=S.APPROVED, approved_by=approved_by,
                        last_edited_by=approved_by,
                        starts_at=timezone.now() - timedelta(seconds=7))  # fmt: skip
    client = _client(editor)
    url = f"/console/campaigns/{approved.pk}/edit/"
    page = client.get(url)
    shown = {"name": approved.name, "notice_version": version.pk}  # the step's own inputs
    data = {**_carried(page.content.decode()), **shown, "step": "version"}
    review = _post(client, url, data, "review")
    assert review.status_code == 200, review.content.decode()[:1500]
    _save(client, review, "draft", url=url)
    approved.refresh_from_db()
    assert approved.state == S.APPROVED and approved.last_edited_by == approved_by


def test_a_sending_campaign_is_not_edited_here(editor, version):
    sending = campaign(version=version, state=S.SENDING)
    response = _client(editor).get(f"/console/campaigns/{sending.pk}/edit/")
    assert (
        response.status_code == 302 and response["Location"] == f"/console/campaigns/{sending.pk}/"
    )


def test_the_audience_step_loads_its_script_with_a_policy_that_allows_it(editor, version):
    client = _client(editor)
    data = {**ENTERED, "notice_version": version.pk, "step": "version"}
    page = _post(client, NEW, data, "audience")
    assert "audience-count.js" in page.content.decode()
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
