"""Two things the browser tests found, pinned without a browser so they hold everywhere.

- Under ``Referrer-Policy: no-referrer`` a browser posts same-origin forms with
  ``Origin: null``, which Django's CSRF check refuses: nobody could acknowledge or object.
- A reader who switched language got the confirmation in the language of the email.
"""

import re

import pytest
from django.core.cache import cache
from django.test import Client

from campaigns import tokens
from campaigns.models import CampaignState, Delivery
from campaigns.services.fanout import campaign_fan_out
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def notice_url(purpose):
    """Bernd reads German; the notice was also written in French and English."""
    cache.clear()
    MemberFactory(country="US", locale="de")
    campaign_fan_out(campaign=campaign(state=CampaignState.SENDING))
    return f"/n/{tokens.notice_token(Delivery.objects.get().pk)}/"


def effective_referrer_policy(response) -> str:
    """The document's policy: a <meta name="referrer"> overrides the response header."""
    metas = re.findall(r'<meta name="referrer" content="([^"]+)">', response.content.decode())
    return metas[-1] if metas else response["Referrer-Policy"]


def test_public_pages_let_browsers_send_their_origin_with_a_form(notice_url):
    client = Client()
    for url in (notice_url, f"/p/{tokens.member_token(Delivery.objects.get().member_id)}/"):
        assert effective_referrer_policy(client.get(url)) == "same-origin"


def test_forms_keep_the_language_the_reader_switched_to(notice_url):
    client = Client(enforce_csrf_checks=True)
    page = client.get(f"{notice_url}?lang=fr")
    assert f'action="{notice_url}?lang=fr"' in page.content.decode()
    response = client.post(
        f"{notice_url}?lang=fr",
        {"csrfmiddlewaretoken": page.cookies["csrftoken"].value, "action": "acknowledge"},
    )
    assert response.status_code == 302 and "lang=fr" in response["Location"]
    assert 'lang="fr"' in client.get(response["Location"]).content.decode()


def test_an_unsupported_language_is_not_carried_into_the_forms(notice_url):
    page = Client().get(f"{notice_url}?lang=xx%22%3E")
    assert f'action="{notice_url}"' in page.content.decode()
