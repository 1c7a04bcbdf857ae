"""What manifest.json says about the campaign, its notices and the ledger: plain
dictionaries of facts read from the database (times in UTC, ISO 8601)."""

from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from accounts.models import LedgerCheck
from campaigns.models import Campaign, NoticeText, NoticeVersion, text_canonical
from campaigns.rendering import compile_message

FORMAT = "renotify-evidence-pack/1"
# Every notice's rendered files, by kind: (file name prefix, reminder?).
RENDERINGS = (("", False), ("reminder-", True))


def when(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def renotify_version() -> str:
    try:
        return version("renotify")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _who(user) -> str | None:
    return user.get_username() if user is not None else None


def campaign_facts(campaign: Campaign) -> dict[str, Any]:
    """The campaign, its audience as defined and as snapshotted at fan-out, its pace."""
    version = campaign.notice_version
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "state": campaign.state,
        "state_reason": campaign.state_reason,
        "created_at": when(campaign.created_at),
        "created_by": _who(campaign.created_by),
        "notice": {"id": version.notice_id, "title": version.notice.title},
        "notice_version": {"id": version.pk, "number": version.number},
        "audience": {
            "jurisdictions": campaign.jurisdictions,
            "countries": campaign.countries,
            "locales": campaign.locales,
            "members_created_after": when(campaign.members_created_after),
            "members_created_before": when(campaign.members_created_before),
            "purpose": campaign.purpose.slug if campaign.purpose else None,
            "purpose_state": campaign.purpose_state or None,
            "only_not_acknowledged": campaign.only_not_acknowledged,
            "at_fan_out": campaign.audience_snapshot,
        },
        "starts_at": when(campaign.starts_at),
        "window_ends_at": when(campaign.window_ends_at),
        "throttle_per_minute": campaign.throttle_per_minute,
        "remind_after_days": campaign.remind_after_days,
        "max_reminders": campaign.max_reminders,
        "fanned_out_at": when(campaign.fanned_out_at),
    }


def approval_facts(campaign: Campaign) -> dict[str, Any]:
    return {
        "approved_by": _who(campaign.approved_by),
        "approved_at": when(campaign.approved_at),
        "approved_text_sha256": campaign.approved_text_hashes,
    }


def transitions(campaign: Campaign) -> list[dict[str, Any]]:
    """Every state change, oldest first: who, when, from, to, why."""
    return [
        {"at": when(t.at), "by": _who(t.by), "from": t.from_state, "to": t.to_state, "note": t.note}
        for t in campaign.transitions.select_related("by").order_by("at", "pk")
    ]


def version_files(
    version: NoticeVersion, *, reminders: bool
) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(path, bytes) of each file of a version, with what the manifest says of each
    text: notices/<version id>/<locale>/text.json (the exact bytes its SHA-256 covers)
    and the subject and bodies as the sender renders them, links as placeholders."""
    out: list[tuple[str, bytes, dict[str, Any]]] = []
    dates = {
        "effective_date": version.effective_date,
        "objection_deadline": version.objection_deadline,
    }
    for text in NoticeText.objects.filter(version=version).order_by("locale"):
        folder = f"notices/{version.pk}/{text.locale}/"
        files = {"text.json": text_canonical(text, **dates)}
        for prefix, reminder in RENDERINGS[: 2 if reminders else 1]:
            message = compile_message(version, text.locale, reminder=reminder)
            files[f"{prefix}subject.txt"] = message.subject.encode()
            files[f"{prefix}body.txt"] = message.text.encode()
            files[f"{prefix}body.html"] = message.html.encode()
        facts = {"locale": text.locale, "stored_sha256": text.sha256, "folder": folder}
        out.extend((folder + name, data, facts) for name, data in files.items())
    return out


def version_facts(version: NoticeVersion, *, approved: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": version.pk,
        "number": version.number,
        "notice_id": version.notice_id,
        "default_locale": version.default_locale,
        "effective_date": when(version.effective_date),
        "objection_deadline": when(version.objection_deadline),
        "frozen_at": when(version.frozen_at),
        "approved_text_sha256": approved,
        "texts": {},
    }


def check_facts(check: LedgerCheck) -> dict[str, Any]:
    """The verify_ledger run the pack was cut against."""
    return {
        "id": check.pk,
        "checked_at": when(check.checked_at),
        "kind": check.kind,
        "intact": check.intact,
        "events_checked": check.events_checked,
        "head": {"seq": check.head_seq, "hash": check.head_hash},
        "first_broken_seq": check.first_broken_seq,
        "detail": check.detail,
    }
