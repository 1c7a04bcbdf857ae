"""Setting up a wording test in the console's campaign flow, and seeing it where the
approver decides: the flow's variant rows, their errors, the approval page's previews."""

import pytest
from django.test import Client

from campaigns.models import Campaign, CampaignState, CampaignVariant
from campaigns.services import lifecycle
from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, notice_version, staff_user
from tests.test_console_flow import ENTERED, NEW, _carried, _client, _post
from tests.wording import versions_of_one_notice

pytestmark = pytest.mark.django_db


@pytest.fixture
def erin():
    """Erin edits campaigns."""
    return staff_user("erin", *CAMPAIGN_EDITOR)


@pytest.fixture
def versions():
    return versions_of_one_notice(3)


def _entered(versions, **split):
    return {**ENTERED, "notice_version": str(versions[0].pk), "step": "review", **split}


SPLIT = {"share": "33.34", "variant_2_version": None, "variant_2_share": "33.33",
         "variant_3_version": None, "variant_3_share": "33.33"}  # fmt: skip


def _split(versions, **overrides):
    split = {**SPLIT, "variant_2_version": str(versions[1].pk)}
    split["variant_3_version"] = str(versions[2].pk)
    return {**split, **overrides}


def test_erin_creates_a_campaign_with_a_three_way_wording_test(erin, versions):
    client = _client(erin)
    # The split entered on the first step travels on, hidden, to the next.
    step = _post(
        client, NEW, {**_entered(versions, **_split(versions)), "step": "version"}, "audience"
    )
    assert step.status_code == 200
    assert _carried(step.content.decode())["share"] == ["33.34"]
    review = _post(client, NEW, _entered(versions, **_split(versions)), "review")
    assert "v1: 33.34%, v2: 33.33%, v3: 33.33%" in review.content.decode()
    saved = _post(client, NEW, _entered(versions, **_split(versions)), "submit")
    assert saved.status_code == 302
    c = Campaign.objects.get()
    assert c.state == CampaignState.AWAITING_APPROVAL and c.notice_version == versions[0]
    assert list(c.variants.values_list("notice_version", "share")) == [
        (versions[0].pk, 3334),
        (versions[1].pk, 3333),
        (versions[2].pk, 3333),
    ]


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"variant_3_share": "30"}, "The shares add up to 96.67%, not 100%."),
        ({"share": "", "variant_3_version": "", "variant_3_share": ""},
         "Give the version picked above a share"),
        ("same", "version 2: each version may appear only once."),
        ("other", "version 2 is a version of another notice"),
        ({"variant_2_share": "abc"}, "Enter a number."),
    ],
)  # fmt: skip
def test_a_bad_split_is_explained_and_nothing_is_created(erin, versions, overrides, problem):
    if overrides == "same":
        overrides = {"variant_2_version": str(versions[0].pk)}
    elif overrides == "other":
        overrides = {"variant_2_version": str(notice_version(locales=["en"]).pk)}
    response = _post(
        _client(erin), NEW, _entered(versions, **_split(versions, **overrides)), "draft"
    )
    assert response.status_code == 400
    assert problem in response.content.decode().replace("&#x27;", "'")
    assert not Campaign.objects.exists() and not CampaignVariant.objects.exists()


def test_editing_shows_the_split_and_changing_it_sends_back_to_draft(erin, versions):
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    c = lifecycle.campaign_create(by=erin, name="Test", notice_version=versions[0])
    lifecycle.campaign_edit(
        campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)]
    )
    lifecycle.campaign_submit(campaign=c, by=erin)
    lifecycle.campaign_approve(campaign=c, by=bob)
    url = f"/console/campaigns/{c.pk}/edit/"
    client = _client(erin)
    page = client.get(url).content.decode()
    assert 'name="share" value="50.00"' in page or 'name="share" value="50"' in page
    changed = {
        **_entered(versions),
        "share": "60",
        "variant_2_version": str(versions[1].pk),
        "variant_2_share": "40",
    }
    assert _post(client, url, changed, "draft").status_code == 302
    c.refresh_from_db()
    assert c.state == CampaignState.DRAFT
    assert list(c.variants.values_list("share", flat=True)) == [6000, 4000]


def test_the_approval_page_previews_every_variant(erin, versions):
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    c = lifecycle.campaign_create(by=erin, name="Test", notice_version=versions[0])
    lifecycle.campaign_edit(
        campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)]
    )
    lifecycle.campaign_submit(campaign=c, by=erin)
    page = _client(bob).get(f"/console/approvals/{c.pk}/").content.decode()
    assert "Wording test" in page
    for version in versions[:2]:
        assert f"Wording {version.number} in en." in page
        assert f"/console/approvals/{c.pk}/preview/en/?version={version.pk}" in page


def test_the_preview_frame_shows_the_chosen_variant_and_only_the_campaigns(erin, versions):
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    c = lifecycle.campaign_create(by=erin, name="Test", notice_version=versions[0])
    lifecycle.campaign_edit(
        campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)]
    )
    client = _client(bob)
    url = f"/console/approvals/{c.pk}/preview/en/"
    assert "Wording 2 in en." in client.get(f"{url}?version={versions[1].pk}").content.decode()
    assert "Wording 1 in en." in client.get(url).content.decode()
    assert client.get(f"{url}?version={versions[2].pk}").status_code == 404


# --- The Django admin's campaign page --------------------------------------------------


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _admin_add(client, versions, rows):
    data = {
        "name": "Admin test",
        "notice_version": versions[0].pk,
        "throttle_per_minute": "6000",
        "max_reminders": "0",
        "transitions-TOTAL_FORMS": "0",
        "transitions-INITIAL_FORMS": "0",
        "variants-TOTAL_FORMS": str(len(rows)),
        "variants-INITIAL_FORMS": "0",
    }
    for i, (version, share) in enumerate(rows):
        data[f"variants-{i}-notice_version"] = str(version.pk)
        data[f"variants-{i}-share"] = str(share)
    return client.post("/admin/campaigns/campaign/add/", data)


def test_the_admin_inline_sets_a_split_through_the_service(erin, versions):
    client = _admin(erin)
    response = _admin_add(client, versions, [(versions[1], 7000), (versions[0], 3000)])
    assert response.status_code == 302, response.content.decode()[:2000]
    c = Campaign.objects.get()
    assert list(c.variants.values_list("notice_version", "share")) == [
        (versions[1].pk, 7000),
        (versions[0].pk, 3000),
    ]
    assert c.notice_version == versions[1]  # follows the first variant


def test_the_admin_inline_refuses_a_bad_split_with_its_reasons(erin, versions):
    response = _admin_add(_admin(erin), versions, [(versions[0], 7000), (versions[1], 2000)])
    assert response.status_code == 200
    assert "The shares add up to 90%, not 100%." in response.content.decode()
    assert not Campaign.objects.exists() and not CampaignVariant.objects.exists()


def test_the_admin_inline_is_read_only_once_submitted(erin, versions):
    c = lifecycle.campaign_create(by=erin, name="Test", notice_version=versions[0])
    lifecycle.campaign_edit(
        campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)]
    )
    client = _admin(erin)
    draft_page = client.get(f"/admin/campaigns/campaign/{c.pk}/change/").content.decode()
    assert 'name="variants-0-share"' in draft_page
    lifecycle.campaign_submit(campaign=c, by=erin)
    page = client.get(f"/admin/campaigns/campaign/{c.pk}/change/").content.decode()
    assert 'name="variants-0-share"' not in page and "5000" in page
