"""The privacy team's console: members, policies (audited) and a ledger nobody can edit."""

import pytest
from django.urls import reverse

from accounts.jurisdictions import Jurisdiction
from accounts.models import (
    Action,
    ConsentEvent,
    JurisdictionPolicy,
    JurisdictionPolicyChange,
    Purpose,
    Source,
)
from accounts.services.consent import consent_record
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(django_user_model):
    """Priya, the privacy lead: a superuser, so only the admin's own rules stop her."""
    return django_user_model.objects.create_superuser("priya", "priya@example.com", "pw-priya-1")


@pytest.fixture
def console(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def objection(purpose):
    member = MemberFactory(country="US", external_id="ext-42")
    return consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)


def test_ledger_events_cannot_be_added_changed_or_deleted_even_by_a_superuser(console, objection):
    event = objection.event
    change_url = reverse("admin:accounts_consentevent_change", args=[event.pk])
    assert console.get(reverse("admin:accounts_consentevent_add")).status_code == 403
    assert console.post(change_url, {"comment": "edited"}).status_code == 403
    delete_url = reverse("admin:accounts_consentevent_delete", args=[event.pk])
    assert console.post(delete_url, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:accounts_consentevent_changelist")
    bulk_delete = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    console.post(changelist, bulk_delete)
    assert ConsentEvent.objects.get(pk=event.pk).comment == ""
    assert console.get(change_url).status_code == 200  # viewing stays possible


def test_ledger_list_filters_by_member(console, objection, purpose):
    other = MemberFactory(country="US")
    consent_record(member=other, action=Action.OBJECT, source=Source.API, purpose=purpose)
    response = console.get(reverse("admin:accounts_consentevent_changelist"), {"q": "ext-42"})
    assert response.status_code == 200
    assert [e.pk for e in response.context["cl"].result_list] == [objection.event.pk]


def test_member_page_shows_effective_preferences_and_ledger(console, objection):
    member = objection.event.member
    response = console.get(reverse("admin:accounts_member_change", args=[member.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "The member objected" in body
    assert "Objected" in body and "API" in body
    assert f"member__id__exact={member.pk}" in body


def test_changing_a_policy_in_the_admin_is_audited(console, lead, purpose):
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction=Jurisdiction.US)
    url = reverse("admin:accounts_jurisdictionpolicy_change", args=[policy.pk])
    form = {
        "mode": "opt_in",
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
    }
    response = console.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    change = JurisdictionPolicyChange.objects.filter(policy=policy).first()
    assert policy.mode == "opt_in"
    assert (change.from_mode, change.to_mode, change.changed_by) == ("opt_out", "opt_in", lead)
    assert policy.mode_since == change.changed_at


def test_adding_a_purpose_in_the_admin_creates_a_policy_for_every_jurisdiction(console):
    response = console.post(
        reverse("admin:accounts_purpose_add"),
        {
            "slug": "ads-personalisation",
            "name": "Personalise ads with my activity",
            "description": "",
            "gpc_mode": "offered",
            "texts-TOTAL_FORMS": "1",
            "texts-INITIAL_FORMS": "0",
            "texts-0-locale": "de",
            "texts-0-name": "Werbung anhand meiner Aktivität personalisieren",
            "texts-0-description": "",
            "policies-TOTAL_FORMS": "0",
            "policies-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    purpose = Purpose.objects.get(slug="ads-personalisation")
    assert sorted(purpose.policies.values_list("jurisdiction", "mode")) == sorted(
        (j.value, "opt_in") for j in Jurisdiction
    )
    assert purpose.texts.get(locale="de").name.startswith("Werbung")
    assert purpose.gpc_mode == "offered"


@pytest.mark.parametrize(
    "model",
    [
        "member",
        "purpose",
        "jurisdictionpolicy",
        "jurisdictionpolicychange",
        "consentevent",
        "ledgercheck",
    ],
)
def test_every_list_page_renders(console, objection, model):
    assert console.get(reverse(f"admin:accounts_{model}_changelist")).status_code == 200


def test_staff_can_log_in_from_a_real_browser_form(client, lead):
    """Browsers send Origin on form posts; under a no-referrer policy Chromium sends
    "Origin: null", which the CSRF check refuses. The console keeps same-origin."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    page = browser.get(reverse("console:login"))
    assert page["Referrer-Policy"] == "same-origin"
    response = browser.post(
        reverse("console:login"),
        {
            "username": "priya",
            "password": "pw-priya-1",
            "csrfmiddlewaretoken": page.cookies["csrftoken"].value,
            "next": "/admin/",
        },
        HTTP_ORIGIN="http://testserver",
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
