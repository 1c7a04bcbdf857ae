"""db/: each statement does what the ORM's equivalent does, on SQLite and on PostgreSQL.

Statements only PostgreSQL runs (COPY, SKIP LOCKED, jsonb_to_recordset, the ledger's
hold function and one-statement append) are compared there; the rest on both.
The update_from_rows statement has its own tests (tests/test_sql.py) and the notice
page's read one more (tests/test_notice_pages.py).
"""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils.dateparse import parse_datetime

import db
from accounts.models import (
    Action,
    Choice,
    ConsentEvent,
    Member,
    Preference,
    Source,
    SuppressionChange,
    SuppressionState,
)
from accounts.selectors import members_with_effective_state, suppressions
from accounts.services import consent
from accounts.services.consent import PREFERENCE_EFFECT, consent_record
from accounts.services.ledger_replay import UNSUBSCRIBE_EFFECT
from accounts.services.suppression_feed import suppression_feed_sync
from campaigns.models import Campaign, Delivery, DeliveryEvent, DeliveryStatus
from campaigns.services.tracking import MILESTONE, RANK
from db import (
    estimates,
    fanout,
    health,
    ledger,
    ledger_replay,
    member_import,
    notice_page,
    sending,
    suppression_export,
    suppression_feed,
    tracking,
)
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a statement only PostgreSQL runs"
)

T0 = datetime(2031, 1, 6, 9, 0, tzinfo=UTC)
S = DeliveryStatus


def aware(value):
    """A datetime as the ORM gives it: SQLite hands raw SQL naive values or strings."""
    if isinstance(value, str):
        value = parse_datetime(value) or value
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def stored(model, pks, *, exclude=("id",)) -> list[dict]:
    """The rows of ``pks`` as the ORM reads them, in ``pks``' order, without ``exclude``."""
    rows = {row["id"]: row for row in model.objects.filter(pk__in=pks).values()}
    return [{k: v for k, v in rows[pk].items() if k not in exclude} for pk in pks]


def twin_deliveries(n: int, **fields) -> tuple[list[int], list[int]]:
    """Two campaigns' deliveries to the same ``n`` members, alike but for their ids:
    one set for the statement, the other for the ORM."""
    members = MemberFactory.create_batch(n)
    first = campaign(state="sending")
    second = campaign(version=first.notice_version, state="sending")
    ids = []
    for c in (first, second):
        made = Delivery.objects.bulk_create(
            Delivery(campaign=c, member=m, created_at=T0, **fields) for m in members
        )
        ids.append([d.pk for d in made])
    return ids[0], ids[1]


DELIVERY_IDENTITY = ("id", "campaign_id")


# --- The rule's helpers ------------------------------------------------------------


def test_identifiers_are_quoted_from_the_models():
    quote = connection.ops.quote_name
    assert db.table(Member) == quote("accounts_member")
    assert db.column(Delivery, "member") == db.column(Delivery, "member_id") == quote("member_id")
    assert db.placeholders(3) == "%s, %s, %s"


def test_a_renamed_table_follows_the_model(monkeypatch):
    monkeypatch.setattr(Member._meta, "db_table", "renamed_members")
    assert db.table(Member) == connection.ops.quote_name("renamed_members")


def test_rows_are_read_by_column_name():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 AS one, 2 AS two")
        assert db.row_index(cursor) == {"one": 0, "two": 1}
        assert db.row_dict(cursor) == {"one": 1, "two": 2}
        assert db.row_dict(cursor) is None
        cursor.execute("SELECT 1 AS one UNION ALL SELECT 2")
        assert db.row_dicts(cursor) == [{"one": 1}, {"one": 2}]


# --- Health and estimates ----------------------------------------------------------


def test_the_health_probe_is_one_round_trip(django_assert_num_queries):
    with django_assert_num_queries(1):
        health.database_answers()


def test_the_row_estimate_is_the_count_once_analysed():
    MemberFactory.create_batch(3)
    if connection.vendor != "postgresql":
        assert estimates.table_row_estimate(Member) is None
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {db.table(Member)}")
    assert estimates.table_row_estimate(Member) == Member.objects.count()


# --- The ledger write --------------------------------------------------------------


def _prefer(member, purpose, action=Action.OBJECT):
    consent_record(member=member, action=action, source=Source.PREFERENCE_PAGE, purpose=purpose)


def _orm_preference_and_head(member, purpose) -> dict:
    pref = Preference.objects.filter(member=member, purpose=purpose).first()
    head = ConsentEvent.objects.order_by("-seq").first()
    return {
        "pref_id": pref.pk if pref else None,
        "pref_choice": pref.choice if pref else None,
        "pref_last_event_id": pref.last_event_id if pref else None,
        "head_seq": head.seq if head else None,
        "head_hash": head.hash if head else None,
    }


def test_the_member_lock_reads_the_unsubscribe_as_the_orm_does():
    member, other = MemberFactory(), MemberFactory()
    Member.objects.filter(pk=member.pk).update(unsubscribed_at=T0)
    with transaction.atomic():
        for m in (member, other):
            row = ledger.member_lock(member_id=m.pk)
            orm = Member.objects.values("unsubscribed_at").get(pk=m.pk)
            assert {k: aware(v) for k, v in row.items()} == orm
        assert ledger.member_lock(member_id=other.pk + 1000) is None


def test_the_preference_and_head_are_what_the_orm_reads(purpose):
    member = MemberFactory(country="US")
    assert ledger.preference_and_head(member_id=member.pk, purpose_id=purpose.pk) == (
        _orm_preference_and_head(member, purpose)
    )
    _prefer(member, purpose)
    _prefer(MemberFactory(country="US"), purpose)  # the head moves on
    row = ledger.preference_and_head(member_id=member.pk, purpose_id=purpose.pk)
    assert row == _orm_preference_and_head(member, purpose)
    assert row["pref_choice"] == Choice.OUT


@postgres_only
def test_the_ledger_hold_reads_what_the_orm_reads(purpose):
    member = MemberFactory(country="US")
    _prefer(member, purpose)
    with transaction.atomic():
        row = ledger.ledger_hold(member_id=member.pk, purpose_id=purpose.pk, lock_id=1)
        assert row == {
            "member_email_status": member.email_status,
            **_orm_preference_and_head(member, purpose),
        }
        unlocked = ledger.ledger_hold(member_id=None, purpose_id=None, lock_id=1)
        assert unlocked["head_seq"] == row["head_seq"] and unlocked["pref_id"] is None
        assert ledger.ledger_hold(member_id=member.pk + 1000, purpose_id=None, lock_id=1) is None


@postgres_only
def test_the_one_statement_append_writes_what_the_orm_would(purpose):
    member = MemberFactory(country="US")
    _prefer(member, purpose)  # a Preference to update, and a head to follow
    head = ConsentEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    fields = {
        "member_id": member.pk,
        "purpose_id": purpose.pk,
        "action": Action.WITHDRAW_OBJECTION.value,
        "source": Source.API.value,
        "notice_version_id": 7,
        "delivery_id": None,
        "ip_hash": "",
        "user_agent": "ua",
        "comment": "why",
        "metadata": {"k": "v"},
    }
    event = consent._event_new(head, **fields)
    event_id = ledger.event_with_preference_insert(
        event=event, lock_id=1, choice=None, chosen_at=event.created_at
    )
    saved = ConsentEvent.objects.get(pk=event_id)
    for f in ConsentEvent._meta.concrete_fields:
        if not f.primary_key:
            assert getattr(saved, f.attname) == getattr(event, f.attname), f.name
    pref = Preference.objects.get(member=member, purpose=purpose)
    assert (pref.choice, pref.chosen_at, pref.last_event_id) == (None, event.created_at, event_id)
    # Its seq taken now: nothing is written.
    again = consent._event_new(head, **fields)
    assert (
        ledger.event_with_preference_insert(
            event=again, lock_id=1, choice=Choice.OUT, chosen_at=again.created_at
        )
        is None
    )
    assert Preference.objects.get(pk=pref.pk).last_event_id == event_id


# --- The ledger replay -------------------------------------------------------------


def _orm_preference_mismatches() -> list[dict]:
    latest = {}
    for e in ConsentEvent.objects.filter(action__in=list(PREFERENCE_EFFECT)).order_by("seq"):
        latest[(e.member_id, e.purpose_id)] = PREFERENCE_EFFECT[e.action]
    stored_choices = {(p.member_id, p.purpose_id): p.choice for p in Preference.objects.all()}
    found = []
    for key in stored_choices.keys() | latest.keys():
        choice, replayed = stored_choices.get(key), latest.get(key)
        if key in stored_choices and (choice or "") != (replayed or ""):
            found.append((key, choice, replayed))
        elif key not in stored_choices and replayed is not None:
            found.append((key, None, replayed))
    return sorted(
        (
            {
                "external_id": Member.objects.get(pk=member_id).external_id,
                "slug": "ai-training",
                "stored": choice,
                "replayed": replayed,
            }
            for (member_id, _purpose_id), choice, replayed in found
        ),
        key=lambda row: row["external_id"],
    )


def _orm_unsubscribe_mismatches() -> list[dict]:
    ledger_says = set()
    latest = {}
    for e in ConsentEvent.objects.filter(action__in=list(UNSUBSCRIBE_EFFECT)).order_by("seq"):
        latest[e.member_id] = UNSUBSCRIBE_EFFECT[e.action]
    ledger_says = {member_id for member_id, effect in latest.items() if effect}
    stored_says = set(
        Member.objects.filter(unsubscribed_at__isnull=False).values_list("pk", flat=True)
    )
    rows = [(m, 1) for m in stored_says - ledger_says] + [(m, 0) for m in ledger_says - stored_says]
    return sorted(
        ({"external_id": Member.objects.get(pk=m).external_id, "stored": flag} for m, flag in rows),
        key=lambda row: row["external_id"],
    )


def test_the_replay_finds_the_mismatches_the_orm_finds(purpose):
    people = [MemberFactory(country="US", external_id=f"m-{i}") for i in range(6)]
    for person in people[:4]:
        _prefer(person, purpose)
    _prefer(people[1], purpose, Action.WITHDRAW_OBJECTION)
    for person in people[4:]:
        consent_record(member=person, action=Action.UNSUBSCRIBE, source=Source.API)
    Preference.objects.filter(member=people[0]).update(choice=Choice.IN)  # changed
    Preference.objects.filter(member=people[2]).delete()  # lost
    Preference.objects.create(member=people[5], purpose=purpose, choice=Choice.OUT)  # no event
    Member.objects.filter(pk=people[4].pk).update(unsubscribed_at=None)  # lost
    Member.objects.filter(pk=people[3].pk).update(unsubscribed_at=T0)  # no event

    preference_rows = list(ledger_replay.preference_mismatches(effects=PREFERENCE_EFFECT))
    assert preference_rows == _orm_preference_mismatches()
    assert len(preference_rows) == 3
    stored_sql, stored_params = (
        Member.objects.filter(unsubscribed_at__isnull=False).values("pk").query.sql_with_params()
    )
    unsubscribe_rows = list(
        ledger_replay.unsubscribe_mismatches(
            effects={a: "1" if e else "0" for a, e in UNSUBSCRIBE_EFFECT.items()},
            unsubscribed="1",
            stored_sql=stored_sql,
            stored_params=stored_params,
        )
    )
    assert unsubscribe_rows == _orm_unsubscribe_mismatches()
    assert len(unsubscribe_rows) == 2


# --- The member import -------------------------------------------------------------


def _staged(
    line, external_id, email, country="DE", locale="en", jurisdiction="EU", person_key=None
):
    return (line, external_id, email, locale, country, jurisdiction, person_key)


def test_the_import_upsert_writes_what_the_orm_would():
    unchanged = MemberFactory(external_id="same", email="same@example.com", country="DE")
    moved = MemberFactory(external_id="moved", email="old@example.com", country="DE")
    Member.objects.filter(pk=moved.pk).update(email_status="bounced")
    before = {m.pk: m for m in Member.objects.all()}
    rows = [
        _staged(2, "same", "same@example.com"),
        _staged(3, "moved", "new@example.com"),
        _staged(4, "fresh", "fresh@example.com", country="US", jurisdiction="US"),
    ]
    stager = member_import.stager(connection.vendor)
    with transaction.atomic():
        stager.create()
        stager.write(rows)
        assert stager.staged_count() == len(rows)
        would = stager.count_changes()
        done = stager.upsert(status="ok", new_address_health="ok", now=T0)
        stager.drop()
    assert would == done == (1, 1)

    # The ORM's way: the unchanged row untouched, the changed one updated (its address's
    # health starts again), the new one created.
    assert Member.objects.get(pk=unchanged.pk).updated_at == before[unchanged.pk].updated_at
    orm_moved = Member.objects.get(pk=moved.pk)
    orm_moved.email, orm_moved.email_status = "new@example.com", "ok"
    orm_moved.email_status_changed_at = orm_moved.updated_at = T0
    expected_moved = {f.attname: getattr(orm_moved, f.attname) for f in Member._meta.fields}
    assert stored(Member, [moved.pk], exclude=()) == [expected_moved]
    fresh = Member.objects.get(external_id="fresh")
    assert (fresh.email, fresh.locale, fresh.country, fresh.jurisdiction) == (
        "fresh@example.com",
        "en",
        "US",
        "US",
    )
    assert (fresh.email_status, fresh.email_status_changed_at) == ("ok", None)
    assert fresh.created_at == fresh.updated_at == T0 and fresh.unsubscribed_at is None


def test_the_import_rejects_the_repeats_the_orm_would_find():
    rows = [
        _staged(2, "a", "a@example.com"),
        _staged(3, "b", "b@example.com"),
        _staged(4, "a", "a2@example.com"),
        _staged(6, "a", "a3@example.com"),
    ]
    stager = member_import.stager(connection.vendor)
    with transaction.atomic():
        stager.create()
        stager.write(rows)
        stager.write_rejected([(5, "invalid email address")])
        assert stager.reject_duplicates() == 2
        first_line = {}
        for line, external_id, *_ in rows:
            first_line.setdefault(external_id, line)
        repeats = [
            (line, f"duplicate external_id (first seen on line {first_line[ext]})")
            for line, ext, *_ in rows
            if line != first_line[ext]
        ]
        expected = sorted([(5, "invalid email address"), *repeats])
        assert list(stager.rejected(chunk=2)) == expected
        assert stager.rejected_count() == len(expected)
        assert stager.staged_count() == len(rows) - len(repeats)
        stager.drop()


def _members_for_upsert() -> dict[str, Member]:
    """Members an upsert meets: unchanged, moved (bounced), linked, erased."""
    made = {
        "same": MemberFactory(external_id="same", email="same@example.com", country="DE"),
        "moved": MemberFactory(external_id="moved", email="old@example.com", country="DE"),
        "kept": MemberFactory(
            external_id="kept", email="k@example.com", country="DE", person_key="p-1"
        ),
        "unlinked": MemberFactory(
            external_id="unlinked", email="u@example.com", country="DE", person_key="p-2"
        ),
        "erased": MemberFactory(external_id="erased", email="", country="DE"),
    }
    Member.objects.filter(external_id="moved").update(email_status="bounced")
    Member.objects.filter(external_id="erased").update(erased_at=T0 - timedelta(days=1))
    return made


# (external_id, email, locale, country, jurisdiction, person_key) as the upsert gets them.
UPSERT_ROWS = [
    ("same", "same@example.com", "en", "DE", "EU", None),
    ("moved", "new@example.com", "en", "DE", "EU", None),
    ("kept", "k2@example.com", "en", "DE", "EU", None),
    ("unlinked", "u@example.com", "en", "DE", "EU", ""),
    ("erased", "back@example.com", "en", "DE", "EU", None),
    ("fresh", "fresh@example.com", "en", "US", "US", "p-3"),
    ("fresh-unkeyed", "f2@example.com", "en", "US", "US", None),
]


def _orm_upsert(before: dict[int, Member]) -> dict[str, dict]:
    """What the upsert of UPSERT_ROWS leaves, said with the ORM: each member's fields."""
    expected = {}
    for member in before.values():
        row = {f.attname: getattr(member, f.attname) for f in Member._meta.fields}
        expected[member.external_id] = row
    expected["moved"].update(
        email="new@example.com", email_status="ok", email_status_changed_at=T0, updated_at=T0
    )
    expected["kept"].update(email="k2@example.com", updated_at=T0)
    expected["unlinked"].update(person_key="", updated_at=T0)
    return expected


@pytest.mark.parametrize("way", ["staged", "rows"])
def test_the_import_upsert_with_person_keys_and_erased_members_writes_what_the_orm_would(way):
    _members_for_upsert()
    before = {m.pk: m for m in Member.objects.all()}
    stager = member_import.stager(connection.vendor)
    with transaction.atomic():
        if way == "staged":
            stager.create()
            stager.write([(n, *row) for n, row in enumerate(UPSERT_ROWS, start=2)])
            assert stager.reject_erased() == 1
            assert list(stager.rejected(chunk=10)) == [(6, member_import.ERASED_REASON)]
            assert stager.count_changes() == (2, 3)
            assert stager.upsert(status="ok", new_address_health="ok", now=T0) == (2, 3)
            stager.drop()
        else:
            written = stager.rows_upsert(UPSERT_ROWS, status="ok", new_address_health="ok", now=T0)
            assert written == {
                "moved": False,
                "kept": False,
                "unlinked": False,
                "fresh": True,
                "fresh-unkeyed": True,
            }

    expected = _orm_upsert(before)
    for pk, member in before.items():
        assert stored(Member, [pk], exclude=()) == [expected[member.external_id]]
    fresh = dict(Member.objects.filter(created_at=T0).values_list("external_id", "person_key"))
    assert fresh == {"fresh": "p-3", "fresh-unkeyed": ""}


def test_the_erased_members_found_are_those_the_orm_finds():
    _members_for_upsert()
    asked = ["same", "erased", "nobody"]
    orm = set(
        Member.objects.filter(external_id__in=asked, erased_at__isnull=False).values_list(
            "external_id", flat=True
        )
    )
    assert member_import.members_erased(external_ids=asked) == orm == {"erased"}
    assert member_import.members_erased(external_ids=[]) == set()


# --- The suppression export --------------------------------------------------------


@postgres_only
def test_the_copy_export_writes_the_rows_the_orm_reads(purpose):
    for country in ("DE", "US", "GB"):
        MemberFactory(country=country)
    _prefer(MemberFactory(country="US"), purpose)
    query_sql, query_params = suppressions(purpose=purpose).query.sql_with_params()
    out = io.BytesIO()
    count = suppression_export.suppressions_copy_csv(
        query_sql=query_sql,
        query_params=query_params,
        since_format='YYYY-MM-DD"T"HH24:MI:SS"Z"',
        out=out,
    )
    orm = [
        f"{ext},{jurisdiction},{reason},{since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        for ext, jurisdiction, reason, since in suppressions(purpose=purpose)
    ]
    assert out.getvalue().decode().splitlines() == orm
    assert count == len(orm) == 3


# --- Fan-out -----------------------------------------------------------------------


def test_the_campaign_hold_reads_the_state_as_the_orm_does():
    c = campaign(state="paused")
    with transaction.atomic():
        assert fanout.campaign_state_hold(campaign_id=c.pk) == (
            Campaign.objects.values_list("state", flat=True).get(pk=c.pk)
        )
        assert fanout.campaign_state_hold(campaign_id=c.pk + 1000) is None


def test_the_slice_insert_adds_the_rows_the_orm_would():
    members = MemberFactory.create_batch(4)
    ours = campaign(state="sending")
    theirs = campaign(version=ours.notice_version, state="sending")
    Delivery.objects.create(campaign=ours, member=members[0])  # there already
    audience = Member.objects.order_by().values(audience_member_id=F("pk"))
    audience_sql, audience_params = audience.query.sql_with_params()
    added = fanout.deliveries_insert_missing(
        campaign_id=ours.pk,
        wave=2,
        status=S.PENDING.value,
        created_at=T0,
        audience_sql=audience_sql,
        audience_params=audience_params,
        member_id_range=(0, members[-1].pk),
    )
    assert added == 4  # wave 2: the wave-0 row is not this wave's
    again = fanout.deliveries_insert_missing(
        campaign_id=ours.pk,
        wave=2,
        status=S.PENDING.value,
        created_at=T0,
        audience_sql=audience_sql,
        audience_params=audience_params,
        member_id_range=(0, members[-1].pk),
    )
    assert again == 0
    orm = Delivery.objects.bulk_create(
        Delivery(campaign=theirs, member=m, wave=2, status=S.PENDING, created_at=T0)
        for m in members
    )
    ids = list(
        Delivery.objects.filter(campaign=ours, wave=2)
        .order_by("member_id")
        .values_list("pk", flat=True)
    )
    assert stored(Delivery, ids, exclude=DELIVERY_IDENTITY) == stored(
        Delivery, [d.pk for d in orm], exclude=DELIVERY_IDENTITY
    )


# --- The send loop -----------------------------------------------------------------


def test_the_claim_takes_and_changes_the_rows_the_orm_would():
    now = T0
    lease = T0 + timedelta(minutes=5)
    ours, theirs = twin_deliveries(6, status=S.PENDING)
    not_before = [None, now + timedelta(minutes=1), now - timedelta(minutes=1), None, None, None]
    for ids in (ours, theirs):
        for pk, when in zip(ids, not_before, strict=True):
            Delivery.objects.filter(pk=pk).update(not_before=when)
        Delivery.objects.filter(pk=ids[3]).update(status=S.SENT)
    c = Delivery.objects.get(pk=ours[0]).campaign_id

    claimed = sending.deliveries_claim(
        campaign_id=c,
        due_status=S.PENDING.value,
        due_at=now,
        limit=3,
        claimed_status=S.CLAIMED.value,
        lease=lease,
    )
    orm_campaign = Delivery.objects.get(pk=theirs[0]).campaign_id
    due = (
        Delivery.objects.filter(campaign_id=orm_campaign, status=S.PENDING)
        .filter(Q(not_before=None) | Q(not_before__lte=now))
        .order_by("id")
    )
    picked = list(due.values_list("pk", flat=True)[:3])
    Delivery.objects.filter(pk__in=picked).update(
        status=S.CLAIMED, attempts=F("attempts") + 1, lease_expires_at=lease
    )
    claimed = sorted(claimed)
    assert [ours.index(row.id) for row in claimed] == [theirs.index(pk) for pk in picked]
    for row in claimed:
        assert row._asdict() == Delivery.objects.values(*sending.ClaimedRow._fields).get(pk=row.id)
    assert stored(Delivery, ours, exclude=DELIVERY_IDENTITY) == stored(
        Delivery, theirs, exclude=DELIVERY_IDENTITY
    )


@postgres_only
def test_the_claim_skips_rows_another_claim_holds():
    ours, _theirs = twin_deliveries(3, status=S.PENDING)
    c = Delivery.objects.get(pk=ours[0]).campaign_id
    args = {
        "campaign_id": c,
        "due_status": S.PENDING.value,
        "due_at": T0,
        "limit": 2,
        "claimed_status": S.CLAIMED.value,
        "lease": T0,
    }
    with transaction.atomic():
        first = sending.deliveries_claim(**args)
        second = sending.deliveries_claim(**args)
    assert sorted(r.id for r in first) == ours[:2] and [r.id for r in second] == ours[2:]


def test_the_hand_over_moves_the_rows_the_orm_would():
    lease, other_lease = T0, T0 + timedelta(seconds=1)
    ours, theirs = twin_deliveries(3, status=S.CLAIMED, lease_expires_at=lease)
    for ids in (ours, theirs):
        Delivery.objects.filter(pk=ids[1]).update(lease_expires_at=other_lease)
    handed = sending.deliveries_hand_over(
        ids=ours, from_status=S.CLAIMED.value, lease=lease, to_status=S.SENDING.value
    )
    orm = Delivery.objects.filter(pk__in=theirs, status=S.CLAIMED, lease_expires_at=lease)
    orm_handed = set(orm.values_list("pk", flat=True))
    orm.update(status=S.SENDING)
    assert sorted(ours.index(pk) for pk in handed) == sorted(theirs.index(pk) for pk in orm_handed)
    assert stored(Delivery, ours, exclude=DELIVERY_IDENTITY) == stored(
        Delivery, theirs, exclude=DELIVERY_IDENTITY
    )


def test_recording_sends_writes_what_the_orm_would():
    ours, theirs = twin_deliveries(3, status=S.SENDING, lease_expires_at=T0)
    for ids in (ours, theirs):
        Delivery.objects.filter(pk=ids[2]).update(status=S.DELIVERED)  # a webhook was faster
    results = [
        (S.SENT.value, T0, None, "msg-0", "de", ""),
        (S.PENDING.value, None, T0 + timedelta(minutes=1), "", "en", "try again"),
        (S.SENT.value, T0, None, "msg-2", "fr", ""),
    ]
    assert (
        sending.deliveries_record(
            rows=[(pk, *r) for pk, r in zip(ours, results, strict=True)],
            status_only_from=S.SENDING.value,
        )
        == 3
    )
    for pk, (status, sent_at, not_before, message_id, locale, error) in zip(
        theirs, results, strict=True
    ):
        Delivery.objects.filter(pk=pk, status=S.SENDING).update(status=status)
        Delivery.objects.filter(pk=pk).update(
            lease_expires_at=None,
            sent_at=sent_at,
            not_before=not_before,
            esp_message_id=message_id,
            locale=locale,
            error=error,
        )
    assert stored(Delivery, ours, exclude=DELIVERY_IDENTITY) == stored(
        Delivery, theirs, exclude=DELIVERY_IDENTITY
    )


# --- Tracking ----------------------------------------------------------------------


@postgres_only
def test_storing_events_writes_what_the_orm_would():
    rows = [
        {
            "esp": "postmark",
            "event_key": f"key-{i}",
            "event_id": f"id-{i}",
            "event_type": "delivered",
            "timestamp": T0 + timedelta(seconds=i),
            "recipient": "a@example.com",
            "message_id": "m",
            "metadata_delivery_id": 12 if i else None,
            "reject_reason": "",
            "description": "d",
            "mta_response": "250 ok",
            "user_agent": "",
            "click_url": "",
            "raw": {"n": i, "nested": ["x"]},
        }
        for i in range(2)
    ]
    from campaigns.services.tracking import EVENT_COLUMNS

    document = json.dumps(rows, default=lambda value: value.isoformat())
    tracking.events_insert_json(document=document, columns=EVENT_COLUMNS)
    tracking.events_insert_json(document=document, columns=EVENT_COLUMNS)  # repeats: nothing
    DeliveryEvent.objects.bulk_create(
        [DeliveryEvent(**{**row, "esp": "orm"}) for row in rows], ignore_conflicts=True
    )
    ours = list(DeliveryEvent.objects.filter(esp="postmark").order_by("event_key"))
    theirs = list(DeliveryEvent.objects.filter(esp="orm").order_by("event_key"))
    assert len(ours) == len(theirs) == 2
    exclude = ("id", "esp", "received_at")
    assert stored(DeliveryEvent, [e.pk for e in ours], exclude=exclude) == stored(
        DeliveryEvent, [e.pk for e in theirs], exclude=exclude
    )


def test_merging_folded_deliveries_writes_what_the_orm_would():
    milestones = list(MILESTONE.values())
    ours, theirs = twin_deliveries(3, status=S.SENT)
    for ids in (ours, theirs):
        Delivery.objects.filter(pk=ids[0]).update(status=S.OPENED, opened_at=T0, soft_bounces=1)
    later, earlier = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
    folded = [  # (status, soft bounces added, milestone -> time)
        (S.DELIVERED, 0, {"delivered_at": later, "opened_at": later}),
        (S.DEFERRED, 2, {}),
        (S.CLICKED, 0, {"delivered_at": earlier, "opened_at": earlier, "clicked_at": earlier}),
    ]
    rows = [
        (pk, status.value, added, None, *(times.get(m) for m in milestones))
        for pk, (status, added, times) in zip(ours, folded, strict=True)
    ]
    ranks = {str(status): rank for status, rank in RANK.items()}
    assert tracking.deliveries_merge(rows=rows, ranks=ranks, milestones=milestones) == 3
    for pk, (status, added, times) in zip(theirs, folded, strict=True):
        row = Delivery.objects.get(pk=pk)
        if RANK[status] > RANK.get(row.status, 0):
            row.status = status
        row.soft_bounces += added
        for m, at in times.items():
            if getattr(row, m) is None or at < getattr(row, m):
                setattr(row, m, at)
        row.save(update_fields=["status", "soft_bounces", *milestones])
    assert stored(Delivery, ours, exclude=DELIVERY_IDENTITY) == stored(
        Delivery, theirs, exclude=DELIVERY_IDENTITY
    )


def test_marking_events_processed_writes_what_the_orm_would():
    ours_delivery, theirs_delivery = twin_deliveries(1)
    events = DeliveryEvent.objects.bulk_create(
        DeliveryEvent(esp="postmark", event_key=f"k{i}", event_type="delivered", received_at=T0)
        for i in range(4)
    )
    ours, theirs = events[:2], events[2:]
    marks = [(ours_delivery[0], False, True, T0, T0), (None, True, False, T0, None)]
    assert (
        tracking.events_mark_processed(
            rows=[(e.pk, *mark) for e, mark in zip(ours, marks, strict=True)]
        )
        == 2
    )
    for e, (delivery_id, orphan, machine, processed_at, due) in zip(theirs, marks, strict=True):
        DeliveryEvent.objects.filter(pk=e.pk).update(
            delivery_id=theirs_delivery[0] if delivery_id else None,
            is_orphan=orphan,
            is_machine=machine,
            processed_at=processed_at,
            ledger_due_at=due,
        )
    exclude = ("id", "event_key", "delivery_id")
    assert stored(DeliveryEvent, [e.pk for e in ours], exclude=exclude) == stored(
        DeliveryEvent, [e.pk for e in theirs], exclude=exclude
    )
    assert DeliveryEvent.objects.get(pk=ours[0].pk).delivery_id == ours_delivery[0]


# --- The notice page ---------------------------------------------------------------


def test_the_page_read_carries_the_responses_the_orm_reads(purpose):
    member = MemberFactory(country="US")
    c = campaign(state="sending")
    delivery = Delivery.objects.create(campaign=c, member=member, locale="de", sent_at=T0)
    _prefer(member, purpose)
    consent_record(
        member=member,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=c.notice_version_id,
        delivery_id=delivery.pk,
    )
    read = notice_page.notice_delivery_read(
        delivery_id=delivery.pk, page=True, acknowledge=Action.ACKNOWLEDGE.value, viewed_at=T0
    )
    orm = Delivery.objects.select_related("member", "campaign__notice_version").get(pk=delivery.pk)
    parts = (
        (read.delivery, orm, notice_page.DELIVERY_FIELDS),
        (read.member, orm.member, notice_page.MEMBER_FIELDS),
        (read.version, orm.campaign.notice_version, notice_page.VERSION_FIELDS),
    )
    for values, instance, fields in parts:
        expected = [getattr(instance, f) for f in fields]
        if instance is orm:  # read as it was before this view was noted
            expected[fields.index("viewed_at")] = None
        assert [aware(v) for v in values] == expected, fields
    assert (
        read.acknowledged
        is ConsentEvent.objects.filter(
            member=member, action=Action.ACKNOWLEDGE, notice_version_id=c.notice_version_id
        ).exists()
        is True
    )
    orm_preferences = [
        list(p)
        for p in Preference.objects.filter(member=member).values_list(
            *notice_page.PREFERENCE_FIELDS
        )
    ]
    if connection.vendor == "postgresql":
        assert read.viewed_noted and read.preferences is not None
        assert [[aware(v) for v in p] for p in read.preferences] == orm_preferences
    else:  # one more query, the ORM's, and the view noted by its own statement
        assert not read.viewed_noted and read.preferences is None
        notice_page.delivery_viewed_mark(delivery_id=delivery.pk, at=T0)
    assert Delivery.objects.get(pk=delivery.pk).viewed_at == T0
    # The first view stays the one noted, as filter(viewed_at=None).update() leaves it.
    notice_page.delivery_viewed_mark(delivery_id=delivery.pk, at=T0 + timedelta(days=1))
    assert Delivery.objects.get(pk=delivery.pk).viewed_at == T0


def test_an_objection_reads_only_the_delivery():
    member = MemberFactory()
    delivery = Delivery.objects.create(campaign=campaign(), member=member)
    read = notice_page.notice_delivery_read(
        delivery_id=delivery.pk, page=False, acknowledge=Action.ACKNOWLEDGE.value, viewed_at=None
    )
    assert (read.acknowledged, read.preferences, read.viewed_noted) == (None, None, False)
    assert read.delivery[0] == delivery.pk
    assert (
        notice_page.notice_delivery_read(
            delivery_id=delivery.pk + 1000, page=False, acknowledge="", viewed_at=None
        )
        is None
    )


# --- The suppression feed ------------------------------------------------------------


def _feed_effective(purpose):
    return members_with_effective_state(purpose=purpose).values(
        "id", "external_id", "effective_state", "effective_reason", "effective_since"
    )


def _orm_feed_differences(purpose) -> list[tuple]:
    """What the ORM finds changed: members whose state or reason is not the feed's
    last word (or who have none), by member id."""
    last = {
        s.member_id: (s.state, s.reason) for s in SuppressionState.objects.filter(purpose=purpose)
    }
    return [
        (
            m["id"],
            m["external_id"],
            m["effective_state"],
            m["effective_reason"],
            m["effective_since"],
        )
        for m in _feed_effective(purpose).order_by("id")
        if last.get(m["id"]) != (m["effective_state"], m["effective_reason"])
    ]


def _two_statements(**statement) -> int:
    head = suppression_feed.feed_head(purpose_id=statement["purpose_id"])
    appended = suppression_feed.changes_append(**statement)
    assert suppression_feed.states_upsert(purpose_id=statement["purpose_id"], after=head) == (
        appended
    )
    return appended


@pytest.mark.parametrize(
    "append",
    [
        pytest.param(_two_statements, id="append-then-upsert"),
        pytest.param(
            suppression_feed.changes_append_with_states, id="one-statement", marks=postgres_only
        ),
    ],
)
def test_the_feed_diff_appends_and_upserts_what_the_orm_finds_changed(purpose, append):
    moved, stays = MemberFactory(country="US"), MemberFactory(country="GB")
    suppression_feed_sync(purpose=purpose)
    Member.objects.filter(pk=moved.pk).update(country="DE", jurisdiction="EU")  # no sync
    newcomer = MemberFactory(country="US")  # no sync: no last word yet
    expected = _orm_feed_differences(purpose)
    assert [row[0] for row in expected] == [moved.pk, newcomer.pk]

    head = suppression_feed.feed_head(purpose_id=purpose.pk)
    assert head == SuppressionChange.objects.aggregate(m=Max("pk"))["m"]
    query_sql, query_params = _feed_effective(purpose).query.sql_with_params()
    appended = append(
        purpose_id=purpose.pk, query_sql=query_sql, query_params=query_params, recorded_at=T0
    )
    new = SuppressionChange.objects.filter(pk__gt=head).order_by("pk")
    assert appended == 2
    assert [(c.member_id, c.external_id, c.state, c.reason, c.changed_at) for c in new] == expected
    assert {c.recorded_at for c in new} == {T0}

    states = {s.member_id: s for s in SuppressionState.objects.filter(purpose=purpose)}
    for change in new:
        state = states[change.member_id]
        assert (state.state, state.reason, state.changed_at, state.cursor) == (
            change.state,
            change.reason,
            change.changed_at,
            change.pk,
        )
    assert states[stays.pk].state == "out" and _orm_feed_differences(purpose) == []


def test_the_snapshot_rows_are_the_suppressed_states_the_orm_reads(purpose):
    assert list(suppression_feed.snapshot_rows(purpose_id=purpose.pk)) == [(0, None, None, None)]
    for country in ("US", "GB", "DE"):
        MemberFactory(country=country)
    suppression_feed_sync(purpose=purpose)
    rows = list(suppression_feed.snapshot_rows(purpose_id=purpose.pk))
    head = SuppressionChange.objects.aggregate(m=Max("pk"))["m"]
    orm = SuppressionState.objects.filter(purpose=purpose, state="out")
    assert sorted((h, e, r, aware(s)) for h, e, r, s in rows) == sorted(
        (head, s.external_id, s.reason, s.changed_at) for s in orm
    )


@postgres_only
def test_the_copy_snapshot_writes_the_rows_the_orm_reads(purpose):
    for country in ("US", "GB", "DE", "FR"):
        MemberFactory(country=country)
    suppression_feed_sync(purpose=purpose)
    with transaction.atomic():
        blocks = list(suppression_feed.snapshot_ndjson_copy(purpose_id=purpose.pk))
    lines = [json.loads(line) for line in b"".join(blocks).splitlines()]
    orm = SuppressionState.objects.filter(purpose=purpose, state="out")
    assert sorted((line["external_id"], line["reason"], line["since"]) for line in lines) == sorted(
        (s.external_id, s.reason, s.changed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        for s in orm
    )
    assert len(lines) == 3


@postgres_only
def test_the_json_changes_page_holds_the_entries_the_orm_reads(purpose):
    MemberFactory(country="US", external_id='q"u\\o\x01\tté', email="odd@example.com")
    for country in ("GB", "DE", "FR", "US"):
        MemberFactory(country=country)
    suppression_feed_sync(purpose=purpose)
    orm = list(SuppressionChange.objects.filter(purpose=purpose).order_by("pk"))
    pages = [
        suppression_feed.changes_page_json(purpose_id=purpose.pk, after=after, limit=2)
        for after in (0, orm[1].pk, orm[3].pk, orm[4].pk)
    ]
    entries = [entry for page in pages for entry in json.loads(page["entries"])]
    assert entries == [
        {
            "cursor": c.pk,
            "external_id": c.external_id,
            "state": c.state,
            "reason": c.reason,
            "changed_at": c.changed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        for c in orm
    ]
    assert [(p["last_cursor"], p["has_more"]) for p in pages] == [
        (orm[1].pk, True),
        (orm[3].pk, True),
        (orm[4].pk, False),
        (None, False),
    ]


@postgres_only
def test_claiming_events_matches_them_as_the_plain_claim_does():
    """events_claim (one statement: claim, match, mark) against the ORM's claim."""
    from campaigns.services.tracking import _claim_plain

    ids, _ = twin_deliveries(3, esp_message_id="", sent_at=T0)
    for pk in ids:
        Delivery.objects.filter(pk=pk).update(esp_message_id=f"m{pk}")
    by_id, by_message, stale = ids
    events = [  # (metadata_delivery_id, message_id, event_type, raw)
        (by_id, "", "delivered", {"n": 1}),
        (None, f"m{by_message}", "opened", {"n": 2}),
        (999_999_999, f"m{stale}", "bounced", {"Type": "HardBounce"}),  # metadata not ours
        (None, "not-ours", "delivered", {"n": 4}),  # an orphan
        (None, "", "bounced", {"Type": "SoftBounce"}),  # an orphan with nothing to match
    ]
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            esp="Postmark",
            event_key=f"k{i}",
            event_type=kind,
            metadata_delivery_id=meta,
            message_id=message,
            raw=raw,
            received_at=T0,
        )
        for i, (meta, message, kind, raw) in enumerate(events)
    )
    with transaction.atomic():
        plain, plain_deliveries = _claim_plain(10)
        transaction.set_rollback(True)
    claimed = tracking.events_claim(limit=10, now=T0)

    def outcome(pk, delivery_id, raw):
        return (pk, delivery_id, json.loads(raw) if isinstance(raw, str) else raw)

    assert sorted(outcome(r["id"], r["delivery_id"], r["raw"]) for r in claimed) == sorted(
        outcome(e.pk, e.delivery_id, e.raw) for e in plain
    )
    assert [e.delivery_id for e in plain] == [by_id, by_message, stale, None, None]
    assert [e.raw for e in plain][2:] == [{"Type": "HardBounce"}, None, {"Type": "SoftBounce"}]
    read = {r["delivery_id"]: r for r in claimed if r["delivery_id"]}
    for pk, delivery in plain_deliveries.items():
        assert {name: read[pk][name] for name in ("status", "sent_at", "member_id")} == {
            "status": delivery.status,
            "sent_at": delivery.sent_at,
            "member_id": delivery.member_id,
        }
    marked = DeliveryEvent.objects.order_by("id").values_list(
        "processed_at", "delivery_id", "is_orphan"
    )
    assert list(marked) == [
        (T0, by_id, False),
        (T0, by_message, False),
        (T0, stale, False),
        (T0, None, True),
        (T0, None, True),
    ]
    assert tracking.events_claim(limit=10, now=T0) == []  # nothing left to claim
