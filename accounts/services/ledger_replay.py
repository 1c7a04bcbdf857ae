"""Replay the consent ledger into each member's state and find stored state that no
event stands behind.

The chain proves the ledger was not altered; it says nothing about the tables the
application reads (Preference rows, a member's unsubscribe), which plain SQL can
change without a trace. Every such state is the effect of the member's latest
relevant event, so it can be recomputed from the ledger and compared, set-based, in
one statement per kind of state (millions of members):

- a Preference's choice must be what the latest preference event for that member and
  purpose left (``PREFERENCE_EFFECT``: the rule ``consent_record`` applies); no row
  (or no choice) must mean no such event, or one that left no choice;
- a member is stored as unsubscribed exactly when their latest event in
  ``UNSUBSCRIBE_EFFECT`` unsubscribed them.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from accounts.models import Action, ConsentEvent, Member, Preference, Purpose
from accounts.services.consent import PREFERENCE_EFFECT

# Whether each action leaves the member unsubscribed from notice emails. (Only
# unsubscribing exists today; an action that resubscribes would map to False.)
UNSUBSCRIBE_EFFECT: dict[str, bool] = {Action.UNSUBSCRIBE: True}


@dataclass(frozen=True)
class Mismatch:
    """A member whose stored state differs from what their events left."""

    external_id: str
    problem: str


def ledger_replay_mismatches() -> Iterator[Mismatch]:
    """Every stored state with no event behind it (or an event with no state), by member."""
    yield from _preference_mismatches()
    yield from _unsubscribe_mismatches()


def _stored_unsubscribed_members() -> QuerySet:
    """The ids of the members stored as unsubscribed (the state the replay checks)."""
    return Member.objects.filter(unsubscribed_at__isnull=False).values("pk")


def _tables() -> dict[str, str]:
    models = {"event": ConsentEvent, "preference": Preference, "member": Member, "purpose": Purpose}
    return {name: connection.ops.quote_name(model._meta.db_table) for name, model in models.items()}


def _latest_effect(effects: dict, *, per_purpose: bool) -> tuple[str, list]:
    """SQL for each member's (and purpose's) latest event among ``effects``' actions,
    with the effect it left as ``effect`` (NULL for an effect of None)."""
    keys = "member_id, purpose_id" if per_purpose else "member_id"
    whens = [(action, effect) for action, effect in effects.items() if effect is not None]
    case = " ".join("WHEN %s THEN %s" for _ in whens)
    sql = f"""
        SELECT e.{keys.replace(", ", ", e.")}, CASE e.action {case} ELSE NULL END AS effect
        FROM {{event}} e
        JOIN (
            SELECT {keys}, MAX(seq) AS seq FROM {{event}}
            WHERE action IN ({", ".join(["%s"] * len(effects))})
            GROUP BY {keys}
        ) latest ON latest.seq = e.seq
    """
    params = [str(value) for pair in whens for value in pair] + [str(a) for a in effects]
    return sql, params


_PREFERENCE_MISMATCHES_SQL = """
WITH ledger AS ({latest})
SELECT m.external_id, pu.slug, x.stored, x.replayed
FROM (
    SELECT p.member_id, p.purpose_id, p.choice AS stored, l.effect AS replayed
    FROM {preference} p
    LEFT JOIN ledger l ON l.member_id = p.member_id AND l.purpose_id = p.purpose_id
    WHERE COALESCE(p.choice, '') <> COALESCE(l.effect, '')
    UNION ALL
    SELECT l.member_id, l.purpose_id, NULL, l.effect
    FROM ledger l
    LEFT JOIN {preference} p ON p.member_id = l.member_id AND p.purpose_id = l.purpose_id
    WHERE p.id IS NULL AND l.effect IS NOT NULL
) x
JOIN {member} m ON m.id = x.member_id
JOIN {purpose} pu ON pu.id = x.purpose_id
ORDER BY m.external_id, pu.slug
"""


def _preference_mismatches() -> Iterator[Mismatch]:
    latest, params = _latest_effect(PREFERENCE_EFFECT, per_purpose=True)
    tables = _tables()
    sql = _PREFERENCE_MISMATCHES_SQL.format(latest=latest.format(**tables), **tables)
    for external_id, slug, stored, replayed in _rows(sql, params):
        yield Mismatch(external_id, f"{slug}: stored {_choice(stored)}, ledger {_choice(replayed)}")


def _choice(choice: str | None) -> str:
    return f"'{choice}'" if choice else "none"


_UNSUBSCRIBE_MISMATCHES_SQL = """
WITH ledger AS (SELECT member_id FROM ({latest}) l WHERE l.effect = %s),
stored (member_id) AS ({stored})
SELECT m.external_id, x.stored
FROM (
    SELECT s.member_id, 1 AS stored FROM stored s
    LEFT JOIN ledger l ON l.member_id = s.member_id WHERE l.member_id IS NULL
    UNION ALL
    SELECT l.member_id, 0 FROM ledger l
    LEFT JOIN stored s ON s.member_id = l.member_id WHERE s.member_id IS NULL
) x
JOIN {member} m ON m.id = x.member_id
ORDER BY m.external_id
"""


def _unsubscribe_mismatches() -> Iterator[Mismatch]:
    latest, latest_params = _latest_effect(
        {action: "1" if effect else "0" for action, effect in UNSUBSCRIBE_EFFECT.items()},
        per_purpose=False,
    )
    stored, stored_params = _stored_unsubscribed_members().query.sql_with_params()
    tables = _tables()
    sql = _UNSUBSCRIBE_MISMATCHES_SQL.format(
        latest=latest.format(**tables),
        stored=stored,
        **tables,
    )
    for external_id, stored_unsubscribed in _rows(sql, [*latest_params, "1", *stored_params]):
        yield Mismatch(
            external_id,
            "stored unsubscribed, no unsubscribe in the ledger"
            if stored_unsubscribed
            else "ledger unsubscribed, stored not unsubscribed",
        )


def _rows(sql: str, params: list) -> Iterator[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(1000):
            yield from rows
