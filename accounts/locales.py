"""Locales as Renotify stores and compares them: one spelling, and the language behind it."""


def locale_normalise(locale: str) -> str:
    """A locale as Django writes language codes: "de_AT", "DE-at" -> "de-at"."""
    return locale.strip().replace("_", "-").lower()


def locale_language(locale: str) -> str:
    """The language a locale falls back to: "de-AT", "de_at", "de" -> "de"."""
    return locale_normalise(locale).split("-")[0]
