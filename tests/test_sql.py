"""db.rows.update_from_rows: one statement, per-row values, merged with the row."""

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.models import Delivery
from db import rows as sql
from db.rows import Column, update_from_rows
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
COLUMNS = [Column("id", "bigint"), Column("error", "text"), Column("sent_at", "timestamptz")]
KEEP_EARLIER = {
    "error": "v.error",
    "sent_at": "CASE WHEN d.sent_at IS NULL OR v.sent_at < d.sent_at"
    " THEN v.sent_at ELSE d.sent_at END",
}


def deliveries(n: int) -> list[Delivery]:
    c = campaign()
    return Delivery.objects.bulk_create(
        Delivery(campaign=c, member=MemberFactory()) for _ in range(n)
    )


def test_each_row_gets_its_own_values_in_one_statement(django_assert_num_queries):
    rows = deliveries(3)
    with django_assert_num_queries(1):
        updated = update_from_rows(
            model=Delivery,
            columns=COLUMNS,
            rows=[(d.pk, f"e{i}", T0 + timedelta(minutes=i)) for i, d in enumerate(rows)],
            assignments=KEEP_EARLIER,
        )
    assert updated == 3
    assert list(Delivery.objects.order_by("pk").values_list("error", "sent_at")) == [
        ("e0", T0),
        ("e1", T0 + timedelta(minutes=1)),
        ("e2", T0 + timedelta(minutes=2)),
    ]


def test_assignments_can_merge_with_the_stored_value():
    first, second = deliveries(2)
    Delivery.objects.filter(pk=first.pk).update(sent_at=T0)
    Delivery.objects.filter(pk=second.pk).update(sent_at=T0 + timedelta(hours=2))
    update_from_rows(
        model=Delivery,
        columns=COLUMNS,
        rows=[(d.pk, "", T0 + timedelta(hours=1)) for d in (first, second)],
        assignments=KEEP_EARLIER,
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.sent_at, second.sent_at) == (T0, T0 + timedelta(hours=1))


def test_rows_that_do_not_exist_are_ignored_and_nulls_pass_through():
    (d,) = deliveries(1)
    updated = update_from_rows(
        model=Delivery,
        columns=COLUMNS,
        rows=[(d.pk, "kept", None), (d.pk + 1000, "nobody", T0)],
        assignments={"error": "v.error", "sent_at": "v.sent_at"},
    )
    d.refresh_from_db()
    assert (updated, d.error, d.sent_at) == (1, "kept", None)


def test_many_rows_are_split_below_sqlites_parameter_cap(monkeypatch):
    monkeypatch.setattr(sql, "SQLITE_MAX_PARAMETERS", 7)  # two rows per statement there
    rows = deliveries(5)
    updated = update_from_rows(
        model=Delivery,
        columns=COLUMNS,
        rows=[(d.pk, str(d.pk), T0) for d in rows],
        assignments={"error": "v.error"},
    )
    assert updated == 5
    assert {d.pk: d.error for d in Delivery.objects.all()} == {d.pk: str(d.pk) for d in rows}


def test_the_first_column_must_be_the_primary_key():
    with pytest.raises(ValueError, match="primary key"):
        update_from_rows(
            model=Delivery,
            columns=COLUMNS[1:],
            rows=[("x", T0)],
            assignments={"error": "v.error"},
        )


def test_it_writes_what_the_orms_updates_would_with_its_own_parameters(monkeypatch):
    """Assignments take their values as parameters (before the rows'), on every batch."""
    monkeypatch.setattr(sql, "SQLITE_MAX_PARAMETERS", 8)  # one parameter, two rows a batch
    ours, theirs = deliveries(5), deliveries(5)
    for twins in (ours, theirs):
        Delivery.objects.filter(pk__in=[twins[1].pk, twins[3].pk]).update(status="sent")
    values = [(f"e{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    updated = update_from_rows(
        model=Delivery,
        columns=COLUMNS,
        rows=[(d.pk, *v) for d, v in zip(ours, values, strict=True)],
        assignments={
            "error": "CASE WHEN d.status = %s THEN v.error ELSE d.error END",
            "sent_at": "v.sent_at",
        },
        params=["pending"],
    )
    assert updated == 5
    for d, (error, sent_at) in zip(theirs, values, strict=True):
        Delivery.objects.filter(pk=d.pk, status="pending").update(error=error)
        Delivery.objects.filter(pk=d.pk).update(sent_at=sent_at)

    def written(twins):
        return list(
            Delivery.objects.filter(pk__in=[d.pk for d in twins])
            .order_by("pk")
            .values("status", "error", "sent_at")
        )

    assert written(ours) == written(theirs)
    assert [row["error"] for row in written(ours)] == ["e0", "", "e2", "", "e4"]
