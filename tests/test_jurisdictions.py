import pytest

from accounts.jurisdictions import (
    EU_MEMBER_STATES,
    Jurisdiction,
    jurisdiction_for,
    normalise_country,
)
from tests.factories import MemberFactory


def test_the_eu_has_27_member_states():
    assert len(EU_MEMBER_STATES) == 27


@pytest.mark.parametrize(
    ("country", "jurisdiction"),
    [
        ("GB", Jurisdiction.UK),
        ("DE", Jurisdiction.EU),
        ("RE", Jurisdiction.EU),  # Réunion is part of France, and so of the EU
        ("NO", Jurisdiction.EEA),
        ("LI", Jurisdiction.EEA),
        ("CH", Jurisdiction.CH),
        ("US", Jurisdiction.US),
        ("PR", Jurisdiction.US),
        ("BR", Jurisdiction.OTHER),
        ("JE", Jurisdiction.OTHER),  # Jersey is not in the UK
    ],
)
def test_country_maps_to_jurisdiction(country, jurisdiction):
    assert jurisdiction_for(country) == jurisdiction


@pytest.mark.parametrize(
    ("raw", "code"),
    [("gb", "GB"), (" de ", "DE"), ("UK", "GB"), ("EL", "GR"), ("XX", None), ("", None)],
)
def test_country_codes_are_normalised_or_refused(raw, code):
    assert normalise_country(raw) == code


@pytest.mark.django_db
def test_saving_a_member_derives_jurisdiction_from_country():
    member = MemberFactory(country="FR")
    member.country = "CH"
    member.save(update_fields=["country"])
    member.refresh_from_db()
    assert member.jurisdiction == Jurisdiction.CH
