"""What a member is told while their jurisdiction is under a planned gate: not used yet
where you live; planned from <date> unless you object; your objection applies then too.
On the notice and preference pages (with the objection offered and recorded), in the
objection receipt, in the API's member state, in English, German and French. Without
a planned gate, excluded reads as before."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import formats, timezone, translation

from accounts.models import Action, ConsentEvent, Preference
from api.models import Scope
from api.services.clients import api_client_create
from campaigns import tokens
from gates.services import GateTerms, gate_define
from tests.factories import sent_delivery, staff_user
from tests.gates_helpers import PLANNED

pytestmark = pytest.mark.django_db
EXCLUDED_TODAY = "Where you live, we do not use data for this at all, whatever you choose."


@pytest.fixture(autouse=True)
def _receipts_inline(receipts_inline):
    cache.clear()  # the POST rate limits count per link and address in the cache


def uk_delivery(locale="en"):
    """Uma, in the UK (AI training excluded), was sent the notice an hour ago."""
    return sent_delivery(
        email="uma@example.com", locale=locale, sent_ago=timedelta(hours=1), country="GB"
    )


def gate_planned(purpose, delivery, opens_to="opt_out"):
    ada = staff_user("ada", "gates.add_gate")
    terms = GateTerms(opens_to, PLANNED, [delivery.campaign_id], 30, Decimal(90))
    return gate_define(purpose=purpose, jurisdiction="UK", terms=terms, by=ada)


def page(delivery, lang="en") -> str:
    return Client().get(f"/n/{tokens.notice_token(delivery.pk)}/?lang={lang}").content.decode()


def when(lang="en") -> str:
    with translation.override(lang):
        return formats.date_format(PLANNED, "DATE_FORMAT")


def object_on_page(delivery, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    url = f"/n/{tokens.notice_token(delivery.pk)}/?lang=en"
    csrf = client.get(url).cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": "ai-training"}
        )
    return client.get(url).content.decode()


def test_without_a_planned_gate_excluded_reads_as_before(purpose):
    delivery = uk_delivery()
    html = page(delivery)
    assert EXCLUDED_TODAY in html and "planned from" not in html


def test_under_a_planned_gate_the_page_tells_of_the_opening_and_offers_the_objection(purpose):
    delivery = uk_delivery()
    page(delivery)  # a page kept from before the gate must not be served after it
    gate_planned(purpose, delivery)

    html = page(delivery)

    assert EXCLUDED_TODAY not in html
    assert (
        f"Not used yet where you live; planned from {when()} unless you object. "
        "If you object now, your objection applies then too."
    ) in html
    assert 'name="action" value="object"' in html


def test_an_objection_made_under_the_gate_is_recorded_and_said_to_apply_then_too(
    purpose, django_capture_on_commit_callbacks
):
    delivery = uk_delivery()
    gate_planned(purpose, delivery)

    html = object_on_page(delivery, django_capture_on_commit_callbacks)

    event = ConsentEvent.objects.get(action=Action.OBJECT)
    assert (event.member_id, event.purpose_id) == (delivery.member_id, purpose.pk)
    assert Preference.objects.get(member=delivery.member).choice == "out"
    assert (
        f"You objected. Not used yet where you live; planned from {when()}, "
        "and your objection applies then too."
    ) in html
    assert 'value="allow"' in html
    (receipt,) = mail.outbox
    line = f"Where you live, we do not use data for this yet. We plan to from {when()}:"
    assert line in receipt.body and line in receipt.alternatives[0][0]


def test_a_receipt_without_a_planned_gate_says_nothing_of_one(
    purpose, django_capture_on_commit_callbacks
):
    delivery = uk_delivery()
    object_on_page(delivery, django_capture_on_commit_callbacks)
    (receipt,) = mail.outbox
    assert "We plan to" not in receipt.body


def test_a_planned_opt_in_says_data_is_used_only_from_those_who_agree(purpose):
    delivery = uk_delivery()
    gate_planned(purpose, delivery, opens_to="opt_in")
    assert f"Not used yet where you live. From {when()} we plan to use data" in page(delivery)


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("de", "Wo Sie leben, noch nicht genutzt; geplant ab"),
        ("fr", "Pas encore utilisées là où vous vivez ; prévu à partir du"),
    ],
)
def test_the_wording_is_translated(purpose, lang, words):
    delivery = uk_delivery(locale=lang)
    gate_planned(purpose, delivery)
    html = page(delivery, lang)
    assert words in html and when(lang) in html


def test_the_api_says_what_is_planned_for_the_member(purpose):
    delivery = uk_delivery()
    ines = staff_user("ines", "api.manage_apiclient")
    _client, key = api_client_create(name="app", scopes=[Scope.PREFERENCES_READ], by=ines)
    path = f"/api/v1/members/{delivery.member.external_id}/preferences"
    headers = {"Authorization": f"Bearer {key}"}
    before = Client().get(path, headers=headers).json()["purposes"][0]
    gate_planned(purpose, delivery)
    after = Client().get(path, headers=headers).json()["purposes"][0]

    assert (before["planned_mode"], before["planned_from"]) == (None, None)
    assert (after["state"], after["reason"]) == ("out", "jurisdiction-excluded")
    assert (after["planned_mode"], after["planned_from"]) == ("opt_out", PLANNED.isoformat())


def test_opening_ends_the_announcement(purpose, django_capture_on_commit_callbacks):
    """Once open (the policy switches), the member reads the ordinary opt-out wording."""
    from accounts.models import JurisdictionPolicy
    from accounts.services.policies import policy_set_mode

    delivery = uk_delivery()
    gate_planned(purpose, delivery)
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction="UK")
    with django_capture_on_commit_callbacks(execute=True):
        # As the gate's opening does (gates.services.gate_open): with the gate's authority.
        policy_set_mode(policy=policy, mode="opt_out", by=None, perm="gates.open_gate")
    html = page(delivery)
    assert "planned from" not in html and "You have not objected." in html
    assert timezone.localdate() < PLANNED
