"""Which privacy regime a member's country falls under, as data rather than if-chains."""

from django.db import models
from django_countries import countries


class Jurisdiction(models.TextChoices):
    UK = "UK", "United Kingdom"
    EU = "EU", "European Union"
    EEA = "EEA", "EEA outside the EU (IS, LI, NO)"
    CH = "CH", "Switzerland"
    US = "US", "United States"
    OTHER = "OTHER", "Other"


EU_MEMBER_STATES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)
# Parts of EU member states that ISO 3166-1 lists under codes of their own.
EU_TERRITORIES_WITH_OWN_CODE = frozenset(["AX", "GF", "GP", "MQ", "RE", "YT", "MF"])
EEA_ONLY_STATES = frozenset({"IS", "LI", "NO"})
US_TERRITORIES = frozenset(["US", "PR", "GU", "VI", "AS", "MP", "UM"])

COUNTRY_JURISDICTION: dict[str, Jurisdiction] = {
    **{code: Jurisdiction.EU for code in EU_MEMBER_STATES | EU_TERRITORIES_WITH_OWN_CODE},
    **{code: Jurisdiction.EEA for code in EEA_ONLY_STATES},
    **{code: Jurisdiction.US for code in US_TERRITORIES},
    "GB": Jurisdiction.UK,
    "CH": Jurisdiction.CH,
}

# Codes that are not ISO 3166-1 alpha-2 but that exports from other systems use.
COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}

ISO_COUNTRY_CODES = frozenset(code for code, _name in countries)


def jurisdiction_for(country: str) -> Jurisdiction:
    return COUNTRY_JURISDICTION.get(country, Jurisdiction.OTHER)


def normalise_country(raw: str) -> str | None:
    """The ISO 3166-1 alpha-2 code for ``raw`` (case and aliases folded), or None."""
    code = raw.strip().upper()
    code = COUNTRY_ALIASES.get(code, code)
    return code if code in ISO_COUNTRY_CODES else None
