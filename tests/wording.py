"""Shared set-up for wording-test tests: versions of one notice and a split campaign."""

from datetime import date

from campaigns.models import Notice, NoticeText, NoticeVersion


def versions_of_one_notice(count: int, *, locales=("en",)) -> list[NoticeVersion]:
    """``count`` versions of one notice; each text says which version it is ("Wording 2")."""
    notice = Notice.objects.create(title="AI training notice")
    versions = []
    for _ in range(count):
        version = NoticeVersion.objects.create(
            notice=notice, effective_date=date(2027, 3, 1), objection_deadline=date(2027, 2, 15)
        )
        for locale in locales:
            NoticeText.objects.create(
                version=version,
                locale=locale,
                subject=f"Subject v{version.number} [{locale}]",
                body_markdown=f"Wording {version.number} in {locale}.",
            )
        versions.append(version)
    return versions
