"""Setting up a wording test in the console's campaign flow, and seeing it where the
approver decides: the flow's variant rows, their errors, the approval page's previews."""

import pytest

from campaigns.models import Campaign, CampaignState, CampaignVariant
from campaigns.services import lifecycle
from campaigns.services.variants import campaign_variants_set
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
    campaign_variants_set(campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)])
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
    campaign_variants_set(campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)])
    lifecycle.campaign_submit(campaign=c, by=erin)
    page = _client(bob).get(f"/console/approvals/{c.pk}/").content.decode()
    assert "Wording test" in page
    for version in versions[:2]:
        assert f"Wording {version.number} in en." in page
        assert f"/console/approvals/{c.pk}/preview/en/?version={version.pk}" in page


def test_the_preview_frame_shows_the_chosen_variant_and_only_the_campaigns(erin, versions):
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    c = lifecycle.campaign_create(by=erin, name="Test", notice_version=versions[0])
    campaign_variants_set(campaign=c, by=erin, variants=[(versions[0], 5000), (versions[1], 5000)])
    client = _client(bob)
    url = f"/console/approvals/{c.pk}/preview/en/"
    assert "Wording 2 in en." in client.get(f"{url}?version={versions[1].pk}").content.decode()
    assert "Wording 1 in en." in client.get(url).content.decode()
    assert client.get(f"{url}?version={versions[2].pk}").status_code == 404
