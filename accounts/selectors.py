"""Reads about members: effective preference state, for one member or for millions.

Effective state = ``excluded`` if the jurisdiction's policy says so; else the
member's explicit choice; else the policy's default. ``STATE_TABLE`` is the one
place that rule is written down: the single-member function looks it up and
the queryset annotation is generated from it, so the two cannot disagree.
"""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, TypedDict

from django.db import connection, models, transaction
from django.db.models import Case, F, FilteredRelation, Max, Q, QuerySet, Value, When
from django.db.models.functions import Greatest

from accounts.jurisdictions import Jurisdiction
from accounts.locales import locale_language, locale_normalise
from accounts.models import (
    DEFAULT_POLICY_MODE,
    Choice,
    JurisdictionPolicy,
    Member,
    PolicyMode,
    Preference,
    Purpose,
    SuppressionChange,
)
from config.cache import ProcessCache
from db import suppression_feed as db_suppression_feed

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class Reason(models.TextChoices):
    JURISDICTION_EXCLUDED = "jurisdiction-excluded", "Excluded in the member's jurisdiction"
    OBJECTED = "objected", "The member objected"
    NOT_OPTED_IN = "not-opted-in", "Opt-in jurisdiction, the member has not opted in"
    OPTED_IN = "opted-in", "The member opted in"
    NOT_OBJECTED = "not-objected", "Opt-out jurisdiction, the member has not objected"


# (policy mode, explicit choice or None) -> (effective state, why)
STATE_TABLE: dict[tuple[PolicyMode, Choice | None], tuple[Choice, Reason]] = {
    (PolicyMode.EXCLUDED, None): (Choice.OUT, Reason.JURISDICTION_EXCLUDED),
    (PolicyMode.EXCLUDED, Choice.IN): (Choice.OUT, Reason.JURISDICTION_EXCLUDED),
    (PolicyMode.EXCLUDED, Choice.OUT): (Choice.OUT, Reason.JURISDICTION_EXCLUDED),
    (PolicyMode.OPT_OUT, None): (Choice.IN, Reason.NOT_OBJECTED),
    (PolicyMode.OPT_OUT, Choice.IN): (Choice.IN, Reason.OPTED_IN),
    (PolicyMode.OPT_OUT, Choice.OUT): (Choice.OUT, Reason.OBJECTED),
    (PolicyMode.OPT_IN, None): (Choice.OUT, Reason.NOT_OPTED_IN),
    (PolicyMode.OPT_IN, Choice.IN): (Choice.IN, Reason.OPTED_IN),
    (PolicyMode.OPT_IN, Choice.OUT): (Choice.OUT, Reason.OBJECTED),
}
# Reasons that come from the member's own choice; the others come from the policy.
CHOICE_REASONS = frozenset({Reason.OBJECTED, Reason.OPTED_IN})


@dataclass(frozen=True)
class PolicyInForce:
    mode: PolicyMode
    since: datetime
    # The mode a processing gate plans to open an excluded place to, and from when
    # (``JurisdictionPolicy.planned_*``); None when nothing is planned.
    planned_mode: PolicyMode | None = None
    planned_from: date | None = None

    @property
    def planned(self) -> bool:
        """Excluded now, with an opening announced: what members are told differs."""
        return self.mode == PolicyMode.EXCLUDED and self.planned_from is not None


@dataclass(frozen=True)
class PurposeWording:
    """A purpose as a member reads it: its name and description in one locale (``locale``
    is the text's, "" for the purpose's own wording)."""

    name: str
    description: str
    locale: str


def purpose_wording(*, purpose: Purpose, locale: str | None) -> PurposeWording:
    """The purpose's text for the exact ``locale``, else for its language (de-AT -> de),
    else the purpose's own name and description. A text is taken whole, so a translated
    name never comes with a description in another language. Reads ``purpose.texts``:
    prefetch them (the purposes copy has them) to read no row per purpose."""
    wanted = locale_normalise(locale or "")
    if wanted:
        texts = {text.locale: text for text in purpose.texts.all()}
        for candidate in (wanted, locale_language(wanted)):
            if text := texts.get(candidate):
                return PurposeWording(text.name, text.description, text.locale)
    return PurposeWording(purpose.name, purpose.description, "")


@dataclass(frozen=True)
class EffectiveState:
    purpose: Purpose
    state: Choice
    reason: Reason
    since: datetime
    policy_mode: PolicyMode
    explicit_choice: Choice | None
    # What member pages show of the purpose (the purpose's own wording unless a locale
    # was asked for).
    wording: PurposeWording
    # Excluded where the member lives, with a planned opening (a processing gate):
    # from when, and to which mode. None otherwise.
    planned_from: date | None = None
    planned_mode: PolicyMode | None = None


def policies_in_force(*, purpose: Purpose) -> dict[str, PolicyInForce]:
    """The policy for every jurisdiction (the safe default where no row exists)."""
    rows = {p.jurisdiction: _policy_in_force(p) for p in purpose.policies.all()}
    fallback = PolicyInForce(DEFAULT_POLICY_MODE, purpose.created_at)
    return {j.value: rows.get(j.value, fallback) for j in Jurisdiction}


def _policy_in_force(policy: JurisdictionPolicy) -> PolicyInForce:
    planned = PolicyMode(policy.planned_mode) if policy.planned_mode else None
    return PolicyInForce(
        PolicyMode(policy.mode),
        policy.mode_since,
        planned,
        policy.planned_from if planned is not None else None,
    )


def planned_opening(*, purpose_id: int, jurisdiction: str) -> PolicyInForce | None:
    """The policy of ``jurisdiction`` for the purpose when it is excluded with a planned
    opening (from the per-process copy), else None: receipts and pages word it."""
    for purpose, policies in purposes_in_force():
        if purpose.pk == purpose_id:
            policy = policies.get(jurisdiction)
            return policy if policy is not None and policy.planned else None
    return None


def member_effective_state(*, member: Member, purpose: Purpose) -> EffectiveState:
    policy = policies_in_force(purpose=purpose)[member.jurisdiction]
    pref = Preference.objects.filter(member=member, purpose=purpose).first()
    return _effective_state(member, purpose, policy, pref)


def _effective_state(
    member: Member,
    purpose: Purpose,
    policy: PolicyInForce,
    pref: Preference | None,
    locale: str | None = None,
) -> EffectiveState:
    choice = Choice(pref.choice) if pref and pref.choice else None
    state, reason = STATE_TABLE[(policy.mode, choice)]
    since = (
        pref.chosen_at
        if pref is not None and reason in CHOICE_REASONS
        else max(member.created_at, policy.since)
    )
    wording = purpose_wording(purpose=purpose, locale=locale)
    planned = policy.planned
    return EffectiveState(
        purpose,
        state,
        reason,
        since,
        policy.mode,
        choice,
        wording,
        policy.planned_from if planned else None,
        policy.planned_mode if planned else None,
    )


def member_effective_states(
    *,
    member: Member,
    preferences: dict[int, Preference] | None = None,
    locale: str | None = None,
) -> list[EffectiveState]:
    """Every purpose's state for ``member``, worded for ``locale``: one query for the
    member's preferences (none when the caller read them: ``preferences`` by purpose id),
    the purposes with their texts and policies from ``purposes_in_force`` (a per-process
    copy)."""
    prefs = preferences
    if prefs is None:
        prefs = {p.purpose_id: p for p in Preference.objects.filter(member=member)}
    return [
        _effective_state(
            member, purpose, policies[member.jurisdiction], prefs.get(purpose.pk), locale
        )
        for purpose, policies in purposes_in_force()
    ]


# Purposes and policies change a few times a year and are read on every page a member
# opens, so pages read them from a copy at most this old. Exports, audiences and the
# ledger never use the copy: they read the tables.
PURPOSES_COPY_SECONDS = 30.0
_purposes_copy: ProcessCache[list[tuple[Purpose, dict[str, PolicyInForce]]]] = ProcessCache(
    "purposes in force", max_size=1, ttl_seconds=PURPOSES_COPY_SECONDS
)


def purposes_in_force() -> list[tuple[Purpose, dict[str, PolicyInForce]]]:
    """Every purpose (by slug, its texts read) with its policy per jurisdiction, from a
    per-process copy refreshed every PURPOSES_COPY_SECONDS (and at once when this process
    changes one)."""
    return _purposes_copy.get_or_set("all", _purposes_read)


def _purposes_read() -> list[tuple[Purpose, dict[str, PolicyInForce]]]:
    purposes = Purpose.objects.order_by("slug").prefetch_related("policies", "texts")
    return [(p, policies_in_force(purpose=p)) for p in purposes]


def purpose_by_slug(slug: str) -> Purpose | None:
    return next((p for p, _policies in purposes_in_force() if p.slug == slug), None)


def purposes_worded(*, locale: str | None) -> list[PurposeWording]:
    """Every purpose, by slug, as members read it in ``locale`` (from the copy)."""
    return [purpose_wording(purpose=p, locale=locale) for p, _policies in purposes_in_force()]


def purposes_copy_clear(**_signal_kwargs) -> None:
    """Drop this process's copy now, and again once the change commits (a read in
    between would have copied the old rows)."""
    _purposes_copy.clear()
    transaction.on_commit(_purposes_copy.clear)


class EffectiveStateColumns(TypedDict):
    """The columns ``members_with_effective_state`` adds to each member (for mypy)."""

    effective_state: str
    effective_reason: str
    effective_since: datetime


def members_with_effective_state(
    *, purpose: Purpose, members: QuerySet[Member] | None = None
) -> "QuerySet[WithAnnotations[Member, EffectiveStateColumns]]":
    """``members`` annotated with ``effective_state``, ``effective_reason`` and
    ``effective_since`` for ``purpose``: one LEFT JOIN, no per-member query."""
    policies = policies_in_force(purpose=purpose)
    queryset = (members if members is not None else Member.objects.all()).annotate(
        pref=FilteredRelation("preferences", condition=Q(preferences__purpose=purpose)),
    )
    state_whens, reason_whens = [], []
    for (mode, choice), (state, reason) in STATE_TABLE.items():
        places = [j for j, policy in policies.items() if policy.mode == mode]
        if not places:
            continue
        chose = Q(pref__choice__isnull=True) if choice is None else Q(pref__choice=choice)
        condition = Q(jurisdiction__in=places) & chose
        state_whens.append(When(condition, then=Value(state.value)))
        reason_whens.append(When(condition, then=Value(reason.value)))
    policy_since = Case(
        *(When(jurisdiction=j, then=Value(p.since)) for j, p in policies.items()),
        output_field=models.DateTimeField(),
    )
    return queryset.annotate(
        # A jurisdiction outside the table (none today) falls to "out": the safe side.
        effective_state=Case(*state_whens, default=Value(Choice.OUT.value)),
        effective_reason=Case(*reason_whens, default=Value(Reason.JURISDICTION_EXCLUDED.value)),
    ).annotate(
        effective_since=Case(
            When(effective_reason__in=list(CHOICE_REASONS), then=F("pref__chosen_at")),
            default=Greatest(F("created_at"), policy_since),
            output_field=models.DateTimeField(),
        ),
    )


SUPPRESSION_COLUMNS = ("external_id", "jurisdiction", "reason", "since")


def suppressions(*, purpose: Purpose) -> QuerySet:
    """Members whose effective state for ``purpose`` is out: the rows of the suppression
    list, as tuples in ``SUPPRESSION_COLUMNS`` order, by member id."""
    return (
        members_with_effective_state(purpose=purpose)
        .filter(effective_state=Choice.OUT.value)
        .order_by("id")
        .values_list("external_id", "jurisdiction", "effective_reason", "effective_since")
    )


# --- The suppression feed ------------------------------------------------------------

# An entry as the changes page hands it on: (cursor, external_id, state, reason,
# changed_at), in ``FEED_ENTRY_COLUMNS`` order.
FEED_ENTRY_COLUMNS = ("cursor", "external_id", "state", "reason", "changed_at")
# Times in the feed and its snapshot (db.suppression_feed.PG_SINCE_FORMAT is the same).
FEED_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class FeedPage:
    entries: list[tuple[int, str, str, str, datetime]]
    next_cursor: int  # the last entry's cursor, or ``after`` when there is none
    has_more: bool


def suppression_changes_page(*, purpose: Purpose, after: int, limit: int) -> FeedPage:
    """Up to ``limit`` of the purpose's feed entries after cursor ``after``, in cursor
    order: a keyset read over the (purpose, id) index, as fast at the millionth entry as
    at the first. A cursor beyond the head reads an empty page."""
    rows = list(
        SuppressionChange.objects.filter(purpose=purpose, pk__gt=after)
        .order_by("pk")
        .values_list("pk", "external_id", "state", "reason", "changed_at")[: limit + 1]
    )
    entries = rows[:limit]
    return FeedPage(entries, entries[-1][0] if entries else after, len(rows) > limit)


@dataclass(frozen=True)
class FeedPageJson:
    entries_json: str  # a JSON array of entries: FEED_ENTRY_COLUMNS, changed_at as text
    next_cursor: int
    has_more: bool


def suppression_changes_page_json(*, purpose: Purpose, after: int, limit: int) -> FeedPageJson:
    """``suppression_changes_page`` as JSON text, ``changed_at`` in UTC as
    ``FEED_TIME_FORMAT``: made by PostgreSQL itself there (a page of 10,000 entries
    would spend most of its time making Python objects), through Python elsewhere."""
    if connection.vendor == "postgresql":
        row = db_suppression_feed.changes_page_json(purpose_id=purpose.pk, after=after, limit=limit)
        return FeedPageJson(row["entries"], row["last_cursor"] or after, row["has_more"])
    page = suppression_changes_page(purpose=purpose, after=after, limit=limit)
    entries = [
        {**dict(zip(FEED_ENTRY_COLUMNS, row, strict=True)), "changed_at": feed_time(row[-1])}
        for row in page.entries
    ]
    return FeedPageJson(json.dumps(entries), page.next_cursor, page.has_more)


def feed_time(moment: datetime) -> str:
    """A feed's time as text: UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime(FEED_TIME_FORMAT)


def suppression_feed_head(*, purpose: Purpose) -> int:
    """The purpose's last cursor (0 while its feed is empty)."""
    head = SuppressionChange.objects.filter(purpose=purpose).aggregate(head=Max("pk"))["head"]
    return head or 0
