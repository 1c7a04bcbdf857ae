"""Reads for processing gates: each condition evaluated from the data, met or unmet, with
the figure that decides it ("reach 93.1% of 10,000 ≥ 90%").

Nothing here is stored: the gate's page, ``manage.py gate_status``, the API and the
services (before proposing, and again under the gate's row lock before opening) all
call ``gate_evaluate``, so they cannot disagree. Every figure is an aggregate in SQL
(the reach is ``campaigns.selectors.campaign_reach`` for the gate's jurisdiction, the
figure of the campaign's reach report); the number of queries depends on the number of
named campaigns and registered consumers, never on the number of members.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils import timezone

from accounts.models import (
    DEFAULT_POLICY_MODE,
    Action,
    ConsentEvent,
    JurisdictionPolicy,
    LedgerCheck,
    PolicyMode,
    Source,
)
from accounts.selectors import suppression_feed_head
from api.models import ApiClient, ConsumerPosition, Scope
from campaigns.models import Campaign, CampaignState, Delivery
from campaigns.selectors import campaign_reach
from gates.models import ConsumerConfirmation, Gate, GateEvent
from gates.signing import confirmation_verifies

# The conditions, in the order they are shown and checked.
CONDITIONS = {
    "campaigns": "Named campaigns completed",
    "window": "Objection window after the last delivery or in-app serving",
    "reach": "Reach of each campaign there",
    "consumers": "Suppression feed applied by every consumer",
    "ledger": "Last ledger verification passed",
}


@dataclass(frozen=True)
class Condition:
    key: str
    met: bool
    figure: str
    # The numbers behind the figure, for pipelines (JSON).
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return CONDITIONS[self.key]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "met": self.met,
            "figure": self.figure,
            "numbers": self.numbers,
        }


@dataclass(frozen=True)
class GateStatus:
    gate: Gate
    conditions: list[Condition]
    evaluated_at: datetime
    # The policy's mode now: "excluded" while closed, the gate's mode once open, unless
    # someone changed the policy outside the gate (the page and pipelines see it).
    policy_mode: str

    @property
    def policy_agrees(self) -> bool:
        expected = self.gate.opens_to if self.gate.state == "open" else PolicyMode.EXCLUDED
        return self.policy_mode == expected

    @property
    def met(self) -> bool:
        return all(c.met for c in self.conditions)

    @property
    def unmet(self) -> list[Condition]:
        return [c for c in self.conditions if not c.met]

    def as_dict(self) -> dict[str, Any]:
        """What ``gate_status --json`` and the API answer."""
        gate = self.gate
        return {
            "purpose": gate.purpose.slug,
            "jurisdiction": gate.jurisdiction,
            "state": gate.state,
            "open": gate.state == "open",
            "opens_to": gate.opens_to,
            "planned_opening": gate.planned_opening.isoformat(),
            "proposed_by": gate.proposed_by.get_username() if gate.proposed_by else None,
            "proposed_at": gate.proposed_at.isoformat() if gate.proposed_at else None,
            "opened_at": gate.opened_at.isoformat() if gate.opened_at else None,
            "policy_mode": self.policy_mode,
            "policy_agrees": self.policy_agrees,
            "conditions_met": self.met,
            "conditions": [c.as_dict() for c in self.conditions],
            "evaluated_at": self.evaluated_at.isoformat(),
        }


def gates_list() -> list[Gate]:
    return list(
        Gate.objects.select_related("purpose", "proposed_by").order_by(
            "purpose__slug", "jurisdiction"
        )
    )


def gate_get(*, purpose_slug: str, jurisdiction: str) -> Gate | None:
    return (
        Gate.objects.select_related("purpose", "proposed_by")
        .filter(purpose__slug=purpose_slug, jurisdiction=jurisdiction)
        .first()
    )


def gate_evaluate(*, gate: Gate, now: datetime | None = None) -> GateStatus:
    """Every condition of ``gate``, evaluated now."""
    now = now or timezone.now()
    campaigns = list(gate.campaigns.select_related("notice_version").order_by("pk"))
    conditions = [
        campaigns_condition(campaigns=campaigns),
        window_condition(gate=gate, campaigns=campaigns, now=now),
        reach_condition(gate=gate, campaigns=campaigns),
        consumers_condition(gate=gate),
        ledger_condition(),
    ]
    policy = gate_policy(gate=gate)
    return GateStatus(gate, conditions, now, policy.mode if policy else DEFAULT_POLICY_MODE)


def campaigns_condition(*, campaigns: list[Campaign]) -> Condition:
    done = [c for c in campaigns if c.state == CampaignState.COMPLETED]
    pending = [f"“{c.name}” is {c.get_state_display().lower()}" for c in campaigns if c not in done]
    figure = f"{len(done)} of {len(campaigns)} completed"
    if not campaigns:
        figure = "no campaign named"
    elif pending:
        figure += ": " + "; ".join(pending)
    numbers = {"completed": len(done), "named": len(campaigns)}
    return Condition("campaigns", bool(campaigns) and not pending, figure, numbers)


def last_notice_at(*, gate: Gate, campaigns: list[Campaign]) -> datetime | None:
    """When the named campaigns last reached a member of the gate's jurisdiction: their
    last delivery (any wave, delivered or sent) or the last in-app serving of one of
    their notice versions. Three aggregates over indexed ranges."""
    if not campaigns:
        return None
    deliveries = Delivery.objects.filter(
        campaign__in=campaigns, member__jurisdiction=gate.jurisdiction
    ).aggregate(delivered=Max("delivered_at"), sent=Max("sent_at"))
    # The campaigns' own versions, and any a wording test sent some members instead.
    variants = (
        Delivery.objects.filter(campaign__in=campaigns, notice_version_id__isnull=False)
        .order_by()
        .values_list("notice_version_id", flat=True)
        .distinct()
    )
    versions = {c.notice_version_id for c in campaigns} | {v for v in variants if v is not None}
    served = ConsentEvent.objects.filter(
        action=Action.SERVE,
        source=Source.IN_APP,
        notice_version_id__in=versions,
        member__jurisdiction=gate.jurisdiction,
    ).aggregate(at=Max("created_at"))["at"]
    moments = [m for m in (deliveries["delivered"], deliveries["sent"], served) if m is not None]
    return max(moments) if moments else None


def window_condition(*, gate: Gate, campaigns: list[Campaign], now: datetime) -> Condition:
    last = last_notice_at(gate=gate, campaigns=campaigns)
    if last is None:
        figure = f"no delivery or in-app serving yet; {gate.window_days} days needed after it"
        return Condition("window", False, figure, {"days_needed": gate.window_days})
    ends = last + timedelta(days=gate.window_days)
    elapsed = max(0, (now - last).days)
    figure = (
        f"window {min(elapsed, gate.window_days)} of {gate.window_days} days, "
        f"ends {_when(ends)} (last notice {_when(last)})"
    )
    numbers = {
        "days_needed": gate.window_days,
        "days_elapsed": elapsed,
        "last_at": last.isoformat(),
        "ends_at": ends.isoformat(),
    }
    return Condition("window", now >= ends, figure, numbers)


def reach_condition(*, gate: Gate, campaigns: list[Campaign]) -> Condition:
    """Each named campaign's reach among its audience in the gate's jurisdiction (email
    delivered, shown in-app or acknowledged) must be at least ``reach_percent``."""
    wanted = Decimal(gate.reach_percent)
    parts, numbers, met = [], [], bool(campaigns)
    for c in campaigns:
        reach = campaign_reach(campaign=c, jurisdiction=gate.jurisdiction)
        share = Decimal(reach.reached * 100) / reach.targeted if reach.targeted else None
        ok = share is not None and share >= wanted
        met = met and ok
        if share is None:
            parts.append(f"“{c.name}”: nobody targeted in {gate.jurisdiction}")
        else:
            sign, needed = "≥" if ok else "<", f"{wanted.normalize():f}%"
            parts.append(f"“{c.name}”: reach {share:.1f}% of {reach.targeted:,} {sign} {needed}")
        numbers.append(
            {"campaign": c.pk, "reached": reach.reached, "targeted": reach.targeted, "met": ok}
        )
    figure = "; ".join(parts) if parts else "no campaign named"
    return Condition("reach", met, figure, {"percent_needed": float(wanted), "campaigns": numbers})


def suppression_consumers() -> list[ApiClient]:
    """Registered consumers of the suppression feed: clients, not revoked, whose key may
    follow it. Few rows; the scope is a JSON list, filtered here (SQLite cannot)."""
    live = ApiClient.objects.filter(revoked_at__isnull=True).order_by("name", "pk")
    return [c for c in live.only("pk", "name", "scopes") if Scope.SUPPRESSIONS_READ in c.scopes]


def consumers_condition(*, gate: Gate) -> Condition:
    head = suppression_feed_head(purpose=gate.purpose)
    consumers = suppression_consumers()
    if not consumers:
        return _confirmation_condition(gate, head)
    cursors = dict(
        ConsumerPosition.objects.filter(
            purpose=gate.purpose, client__in=[c.pk for c in consumers]
        ).values_list("client_id", "cursor")
    )
    behind = [(c.name, cursors.get(c.pk)) for c in consumers if cursors.get(c.pk, -1) < head]
    figure = f"{len(consumers) - len(behind)} of {len(consumers)} consumers at the head ({head:,})"
    if behind:
        figure += "; behind: " + ", ".join(
            f"{name} at {cursor:,}" if cursor is not None else f"{name} (never reported)"
            for name, cursor in behind
        )
    numbers = {
        "head": head,
        "consumers": [{"client": c.name, "cursor": cursors.get(c.pk)} for c in consumers],
    }
    return Condition("consumers", not behind, figure, numbers)


def _confirmation_condition(gate: Gate, head: int) -> Condition:
    """No consumer registered: an Approver's signed confirmation covering the head
    stands in (a later entry in the feed needs a new one)."""
    latest = gate_confirmation_latest(gate=gate)
    numbers: dict[str, Any] = {"head": head, "consumers": []}
    if latest is None:
        figure = f"no consumer registered and no confirmation recorded (head {head:,})"
        return Condition("consumers", False, figure, numbers)
    verifies = confirmation_verifies(latest)
    covers = latest.cursor >= head
    numbers["confirmation"] = {
        "by": latest.username,
        "at": latest.at.isoformat(),
        "cursor": latest.cursor,
        "signature_verifies": verifies,
    }
    figure = (
        f"no consumer registered; confirmed by {latest.username} on "
        f"{_when(latest.at)} up to cursor {latest.cursor:,} "
        f"(head {head:,})"
    )
    if not verifies:
        figure += ": its signature does not verify"
    elif not covers:
        figure += ": the feed has moved on since"
    return Condition("consumers", verifies and covers, figure, numbers)


def gate_confirmation_latest(*, gate: Gate) -> ConsumerConfirmation | None:
    return gate.confirmations.select_related("gate__purpose").order_by("-at", "-id").first()


def ledger_condition() -> Condition:
    check = LedgerCheck.objects.order_by("-checked_at", "-id").first()
    if check is None:
        return Condition("ledger", False, "the ledger has never been verified", {})
    when = _when(check.checked_at)
    numbers = {
        "checked_at": check.checked_at.isoformat(),
        "intact": check.intact,
        "events_checked": check.events_checked,
        "kind": check.kind,
    }
    if check.intact:
        kind = check.get_kind_display().lower()
        figure = f"last verification {when} ({kind}): intact, {check.events_checked:,} events"
    else:
        figure = f"last verification {when}: BROKEN at event {check.first_broken_seq}"
    return Condition("ledger", check.intact, figure, numbers)


def gate_history(*, gate: Gate) -> list[GateEvent]:
    return list(gate.events.select_related("by").order_by("-at", "-id"))


def gate_policy(*, gate: Gate) -> JurisdictionPolicy | None:
    return JurisdictionPolicy.objects.filter(
        purpose=gate.purpose, jurisdiction=gate.jurisdiction
    ).first()


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"
