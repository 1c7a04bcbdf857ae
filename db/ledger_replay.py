"""The ledger replay's statements: stored state that no event stands behind, found
set-based, one statement per kind of state (millions of members)."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db import connection

from accounts.models import ConsentEvent, Member, Preference, Purpose
from db import placeholders, row_index, table

FETCH_ROWS = 1000


def _latest_effect(effects: Mapping[str, str | None], *, per_purpose: bool) -> tuple[str, list]:
    """SQL for each member's (and purpose's) latest event among ``effects``' actions,
    with the effect it left as ``effect`` (NULL for an effect of None)."""
    keys = ["member_id", "purpose_id"] if per_purpose else ["member_id"]
    whens = [(action, effect) for action, effect in effects.items() if effect is not None]
    case = " ".join("WHEN %s THEN %s" for _ in whens)
    events = table(ConsentEvent)
    sql = (
        f"SELECT {', '.join(f'e.{key}' for key in keys)},"
        f" CASE e.action {case} ELSE NULL END AS effect"
        f" FROM {events} e"
        f" JOIN (SELECT {', '.join(keys)}, MAX(seq) AS seq FROM {events}"
        f" WHERE action IN ({placeholders(len(effects))})"
        f" GROUP BY {', '.join(keys)}) latest ON latest.seq = e.seq"
    )
    params = [str(value) for pair in whens for value in pair] + [str(a) for a in effects]
    return sql, params


def preference_mismatches(*, effects: Mapping[str, str | None]) -> Iterator[dict[str, Any]]:
    """Each Preference whose choice is not what the latest event among ``effects``'
    actions (for that member and purpose) left, and each such effect with no
    Preference: ``{external_id, slug, stored, replayed}``, by member and purpose."""
    latest, params = _latest_effect(effects, per_purpose=True)
    preferences = table(Preference)
    sql = (
        f"WITH ledger AS ({latest})"
        " SELECT m.external_id AS external_id, pu.slug AS slug,"
        " x.stored AS stored, x.replayed AS replayed"
        " FROM ("
        " SELECT p.member_id, p.purpose_id, p.choice AS stored, l.effect AS replayed"
        f" FROM {preferences} p"
        " LEFT JOIN ledger l ON l.member_id = p.member_id AND l.purpose_id = p.purpose_id"
        " WHERE COALESCE(p.choice, '') <> COALESCE(l.effect, '')"
        " UNION ALL"
        " SELECT l.member_id, l.purpose_id, NULL, l.effect"
        " FROM ledger l"
        f" LEFT JOIN {preferences} p"
        " ON p.member_id = l.member_id AND p.purpose_id = l.purpose_id"
        " WHERE p.id IS NULL AND l.effect IS NOT NULL"
        ") x"
        f" JOIN {table(Member)} m ON m.id = x.member_id"
        f" JOIN {table(Purpose)} pu ON pu.id = x.purpose_id"
        " ORDER BY m.external_id, pu.slug"
    )
    yield from _rows(sql, params)


def unsubscribe_mismatches(
    *,
    effects: Mapping[str, str],
    unsubscribed: str,
    stored_sql: str,
    stored_params: Sequence[Any],
) -> Iterator[dict[str, Any]]:
    """Each member stored as unsubscribed (``stored_sql``: the ORM's SELECT of their
    ids) whose latest event among ``effects``' actions did not leave ``unsubscribed``,
    and each whose did but who is not stored so: ``{external_id, stored}`` (1 for
    stored unsubscribed, 0 for not), by member."""
    latest, latest_params = _latest_effect(effects, per_purpose=False)
    sql = (
        f"WITH ledger AS (SELECT member_id FROM ({latest}) l WHERE l.effect = %s),"
        f" stored (member_id) AS ({stored_sql})"
        " SELECT m.external_id AS external_id, x.stored AS stored"
        " FROM ("
        " SELECT s.member_id, 1 AS stored FROM stored s"
        " LEFT JOIN ledger l ON l.member_id = s.member_id WHERE l.member_id IS NULL"
        " UNION ALL"
        " SELECT l.member_id, 0 FROM ledger l"
        " LEFT JOIN stored s ON s.member_id = l.member_id WHERE s.member_id IS NULL"
        ") x"
        f" JOIN {table(Member)} m ON m.id = x.member_id"
        " ORDER BY m.external_id"
    )
    yield from _rows(sql, [*latest_params, unsubscribed, *stored_params])


def _rows(sql: str, params: list) -> Iterator[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = list(row_index(cursor))
        while rows := cursor.fetchmany(FETCH_ROWS):
            for row in rows:
                yield dict(zip(names, row, strict=True))
