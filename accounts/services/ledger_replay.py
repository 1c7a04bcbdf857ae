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

from django.db.models import QuerySet

from accounts.models import Action, Member
from accounts.services.consent import PREFERENCE_EFFECT
from db import ledger_replay as db_ledger_replay

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


def _preference_mismatches() -> Iterator[Mismatch]:
    for row in db_ledger_replay.preference_mismatches(effects=PREFERENCE_EFFECT):
        stored, replayed = _choice(row["stored"]), _choice(row["replayed"])
        yield Mismatch(row["external_id"], f"{row['slug']}: stored {stored}, ledger {replayed}")


def _choice(choice: str | None) -> str:
    return f"'{choice}'" if choice else "none"


def _unsubscribe_mismatches() -> Iterator[Mismatch]:
    stored_sql, stored_params = _stored_unsubscribed_members().query.sql_with_params()
    rows = db_ledger_replay.unsubscribe_mismatches(
        effects={action: "1" if effect else "0" for action, effect in UNSUBSCRIBE_EFFECT.items()},
        unsubscribed="1",
        stored_sql=stored_sql,
        stored_params=stored_params,
    )
    for row in rows:
        yield Mismatch(
            row["external_id"],
            "stored unsubscribed, no unsubscribe in the ledger"
            if row["stored"]
            else "ledger unsubscribed, stored not unsubscribed",
        )
