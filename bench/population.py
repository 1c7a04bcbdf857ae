"""A synthetic but plausible member population, the same for every benchmark.

Countries are weighted roughly like a large platform's user base with many
users in the UK and the EU (the re-notification case), locales follow the
country, and a few rows are written the sloppy way real exports are (lower-case
country codes, the "UK" alias, ``en_GB`` locales, upper-case mail domains,
blank locales) so that the importer's normalisation does its real work.
Everything is derived from a seed: the same arguments give the same bytes.
"""

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

HEADER = ("external_id", "email", "locale", "country")
Row = tuple[str, str, str, str]


@dataclass(frozen=True)
class Country:
    code: str
    jurisdiction: str
    weight: float  # share of members, in percent
    locales: tuple[str, ...]
    domains: tuple[str, ...] = ()


COUNTRIES = (
    Country("GB", "UK", 14, ("en-gb", "en"), ("btinternet.com", "yahoo.co.uk")),
    Country("DE", "EU", 9, ("de", "de-de"), ("gmx.de", "web.de", "t-online.de")),
    Country("FR", "EU", 7, ("fr", "fr-fr"), ("orange.fr", "free.fr")),
    Country("IT", "EU", 5, ("it",), ("libero.it",)),
    Country("ES", "EU", 5, ("es", "ca"), ("telefonica.es",)),
    Country("NL", "EU", 3, ("nl",), ("ziggo.nl",)),
    Country("PL", "EU", 3, ("pl",), ("wp.pl", "onet.pl")),
    Country("SE", "EU", 1.5, ("sv",), ("telia.se",)),
    Country("BE", "EU", 1.5, ("nl-be", "fr-be"), ("skynet.be",)),
    Country("AT", "EU", 1, ("de-at", "de"), ("gmx.at",)),
    Country("IE", "EU", 1, ("en-ie", "en"), ("eircom.net",)),
    Country("PT", "EU", 1, ("pt-pt", "pt"), ("sapo.pt",)),
    Country("CZ", "EU", 0.8, ("cs",), ("seznam.cz",)),
    Country("RO", "EU", 0.8, ("ro",)),
    Country("DK", "EU", 0.7, ("da",)),
    Country("FI", "EU", 0.6, ("fi", "sv-fi")),
    Country("GR", "EU", 0.6, ("el",)),
    Country("HU", "EU", 0.5, ("hu",)),
    Country("NO", "EEA", 1, ("nb", "nn"), ("online.no",)),
    Country("IS", "EEA", 0.2, ("is",)),
    Country("LI", "EEA", 0.05, ("de-li", "de")),
    Country("CH", "CH", 1.5, ("de-ch", "fr-ch", "it-ch"), ("bluewin.ch",)),
    Country("US", "US", 25, ("en-us", "en", "es-us"), ("yahoo.com", "aol.com", "comcast.net")),
    Country("PR", "US", 0.3, ("es-pr", "en-us")),
    Country("CA", "OTHER", 3, ("en-ca", "fr-ca"), ("rogers.com",)),
    Country("BR", "OTHER", 3, ("pt-br",), ("uol.com.br",)),
    Country("IN", "OTHER", 3, ("en-in", "hi"), ("rediffmail.com",)),
    Country("AU", "OTHER", 2, ("en-au",), ("bigpond.com",)),
    Country("MX", "OTHER", 1.5, ("es-mx",)),
    Country("JP", "OTHER", 1.5, ("ja",), ("docomo.ne.jp",)),
)
CUMULATIVE = list(accumulate(c.weight for c in COUNTRIES))
COMMON_DOMAINS = ("gmail.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me")
FIRST = [
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "kate",
    "liam",
    "mia",
    "noah",
    "olga",
]
LAST = [
    "smith",
    "muller",
    "martin",
    "rossi",
    "garcia",
    "jansen",
    "nowak",
    "berg",
    "dubois",
    "silva",
    "tanaka",
    "kumar",
]


def external_id(index: int) -> str:
    """Unique, random-looking ids (an odd multiplier is a bijection modulo 2**64):
    like UUIDs or hashed ids, they land all over the unique index, not at its end."""
    return f"u{(index * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64:016x}"


def _pick_country(rng: random.Random) -> Country:
    return rng.choices(COUNTRIES, cum_weights=CUMULATIVE)[0]


def _email(rng: random.Random, index: int, country: Country) -> str:
    domains = country.domains + COMMON_DOMAINS
    domain = domains[rng.randrange(len(domains))]
    if rng.random() < 0.05:
        domain = domain.upper()  # the importer folds the domain's case
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{index}@{domain}"


def _locale(rng: random.Random, country: Country) -> str:
    locale = country.locales[rng.randrange(len(country.locales))]
    roll = rng.random()
    if roll < 0.02:
        return ""  # the importer falls back to the default locale
    if roll < 0.05 and "-" in locale:
        lang, region = locale.split("-")
        return f"{lang}_{region.upper()}"  # e.g. en_GB, as many systems write it
    return locale


def _country_as_written(rng: random.Random, country: Country) -> str:
    roll = rng.random()
    if country.code == "GB" and roll < 0.1:
        return "UK"
    return country.code.lower() if roll > 0.99 else country.code


def member_rows(count: int, seed: int = 2024) -> Iterator[Row]:
    rng = random.Random(seed)
    for index in range(count):
        country = _pick_country(rng)
        yield (
            external_id(index),
            _email(rng, index, country),
            _locale(rng, country),
            _country_as_written(rng, country),
        )


def is_changed(index: int) -> bool:
    """Exactly one row in ten changes in the "changed" file."""
    return index % 10 == 3


def changed_count(count: int) -> int:
    return sum(1 for index in range(count) if is_changed(index))


def changed_rows(count: int, seed: int = 2024) -> Iterator[Row]:
    """``member_rows`` with every tenth row given a new email address or a new country."""
    codes = [c.code for c in COUNTRIES]
    for index, (ext_id, email, locale, country) in enumerate(member_rows(count, seed)):
        if is_changed(index):
            if index // 10 % 2:
                local, _, domain = email.partition("@")
                email = f"{local}.new@{domain}"
            else:
                # A different country for sure: aliases and case are folded first.
                current = "GB" if country.upper() == "UK" else country.upper()
                country = codes[(codes.index(current) + 1) % len(codes)]
        yield ext_id, email, locale, country


def write_csv(path: Path, rows: Iterator[Row]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def country_pool_sql() -> str:
    """The country weights as a VALUES list of [lo, hi) ranges on [0, 1), so SQL
    can draw the same distribution with ``random()``."""
    total = CUMULATIVE[-1]
    values = []
    low = 0.0
    for country, high in zip(COUNTRIES, CUMULATIVE, strict=True):
        domain = (country.domains or COMMON_DOMAINS)[0]
        values.append(
            f"('{country.code}', '{country.jurisdiction}', '{country.locales[0]}',"
            f" '{domain}', {low / total!r}, {high / total!r})"
        )
        low = high
    return "VALUES " + ", ".join(values)
