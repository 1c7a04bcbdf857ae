"""Processing gates: defining them, opening them (two people), closing them (one).

Invariants:
- Every action checks its permission first, then its own refusals (``GateRefused``,
  with a sentence saying why), and only then writes; a refused action writes nothing.
  Every done action appends a ``GateEvent`` (the gate's own history, with the
  conditions as they read then) and a staff audit entry, in one transaction.
- Who may do what: Administrators define and change a gate (``gates.add_gate``,
  ``gates.change_gate``: they own purposes and policies); an Approver proposes the
  opening and a *different* Approver confirms it (``gates.open_gate``); Approvers and
  Administrators close (``gates.close_gate``: closing is the safe direction, so one
  person suffices and it is immediate); an Approver records the consumer confirmation
  that stands in while no consumer is registered (``gates.confirm_consumers``).
- Opening is refused while any condition is unmet: checked when proposed, and again at
  confirmation under the gate's row lock, so two confirmations cannot both open it and
  a condition that lapsed since the proposal (a new objection moved the feed's head
  past a consumer) stops it.
- The policy is switched only through ``accounts.services.policies.policy_set_mode``
  (which records the policy change and syncs the feed once the transaction commits):
  opening puts every non-objector there into the feed as ``in`` and keeps objectors
  ``out``, reason ``objected``; closing puts everyone back to ``out``. While a gate is
  closed, its planned opening is on the policy (``policy_plan_set``) for members to
  read; a mode change drops it, so an opened, then closed gate announces nothing until
  it is given a date again.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction
from accounts.models import JurisdictionPolicy, PolicyMode, Purpose
from accounts.permissions import permission_require
from accounts.selectors import suppression_feed_head
from accounts.services.policies import policy_gate_hold, policy_plan_set, policy_set_mode
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import Campaign
from gates.models import ConsumerConfirmation, Gate, GateEvent, GateState, GateStep, OpensTo
from gates.selectors import GateStatus, gate_evaluate, suppression_consumers
from gates.signing import confirmation_sign

ADD, CHANGE = "gates.add_gate", "gates.change_gate"
OPEN, CLOSE, CONFIRM = "gates.open_gate", "gates.close_gate", "gates.confirm_consumers"
STATEMENT_LONGEST = 2000


class GateRefused(Exception):
    """The action is not allowed now; the message says why. Nothing was changed."""


@dataclass(frozen=True)
class GateTerms:
    """The conditions and plan as staff set them (a form or a command parses them)."""

    opens_to: str
    planned_opening: date
    campaign_ids: list[int]
    window_days: int
    reach_percent: Decimal


def gate_define(*, purpose: Purpose, jurisdiction: str, terms: GateTerms, by: User) -> Gate:
    """A new gate for a place that is excluded now; its planned opening is announced."""
    permission_require(by=by, perm=ADD)
    if jurisdiction not in Jurisdiction.values:
        raise GateRefused(f"“{jurisdiction}” is not a jurisdiction")
    with transaction.atomic():
        policy = _excluded_policy(purpose, jurisdiction)
        campaigns = _terms_check(terms)
        try:
            with transaction.atomic():
                gate = Gate.objects.create(
                    purpose=purpose,
                    jurisdiction=jurisdiction,
                    opens_to=terms.opens_to,
                    planned_opening=terms.planned_opening,
                    window_days=terms.window_days,
                    reach_percent=terms.reach_percent,
                )
        except IntegrityError:
            raise GateRefused(f"{purpose.slug} in {jurisdiction} has a gate already") from None
        gate.campaigns.set(campaigns)
        policy_gate_hold(policy=policy)
        policy_plan_set(
            policy=policy, planned_mode=terms.opens_to, planned_from=terms.planned_opening
        )
        _step(gate, GateStep.DEFINED, by, detail=_terms_detail(gate, campaigns))
        staff_action_record(
            by=by, action=Action.GATE_DEFINE, target=gate, detail=_terms_detail(gate, campaigns)
        )
    return gate


def gate_change(*, gate: Gate, terms: GateTerms, by: User) -> Gate:
    """New conditions or plan for a closed gate; a pending proposal is dropped (it was
    for the old terms)."""
    permission_require(by=by, perm=CHANGE)
    with transaction.atomic():
        gate = _locked(gate)
        if gate.state != GateState.CLOSED:
            raise GateRefused("an open gate's conditions cannot change: close it first")
        policy = _excluded_policy(gate.purpose, gate.jurisdiction)
        campaigns = _terms_check(terms)
        before = _terms_detail(gate, list(gate.campaigns.all()))
        gate.opens_to, gate.planned_opening = terms.opens_to, terms.planned_opening
        gate.window_days, gate.reach_percent = terms.window_days, terms.reach_percent
        gate.proposed_by, gate.proposed_at, gate.changed_at = None, None, timezone.now()
        gate.save()
        gate.campaigns.set(campaigns)
        policy_plan_set(
            policy=policy, planned_mode=terms.opens_to, planned_from=terms.planned_opening
        )
        after = _terms_detail(gate, campaigns)
        changes = {k: (before[k], v) for k, v in after.items() if before[k] != v}
        _step(gate, GateStep.CHANGED, by, detail={"changes": changes})
        staff_action_record(by=by, action=Action.GATE_CHANGE, target=gate, changes=changes)
    return gate


def gate_propose(*, gate: Gate, by: User) -> GateStatus:
    """An Approver proposes opening: refused while any condition is unmet. A second
    Approver must confirm (``gate_open``)."""
    permission_require(by=by, perm=OPEN)
    with transaction.atomic():
        gate = _locked(gate)
        if gate.state != GateState.CLOSED:
            raise GateRefused("the gate is open already")
        if gate.proposed_by_id is not None:
            raise GateRefused(f"{gate.proposed_by} has proposed opening it already")
        status = _all_met(gate)
        gate.proposed_by, gate.proposed_at = by, timezone.now()
        gate.save(update_fields=["proposed_by", "proposed_at"])
        detail = _conditions_detail(status)
        _step(gate, GateStep.PROPOSED, by, detail=detail)
        staff_action_record(by=by, action=Action.GATE_PROPOSE, target=gate, detail=detail)
    return status


def gate_open(*, gate: Gate, by: User) -> GateStatus:
    """A second Approver confirms the proposal: the conditions are evaluated again under
    the gate's row lock, and the policy switches to the gate's mode (the feed follows
    once this commits)."""
    permission_require(by=by, perm=OPEN)
    with transaction.atomic():
        gate = _locked(gate)
        if gate.state != GateState.CLOSED:
            raise GateRefused("the gate is open already")
        if gate.proposed_by_id is None:
            raise GateRefused("nobody has proposed opening it: an Approver proposes first")
        if gate.proposed_by_id == by.pk:
            raise GateRefused("you proposed opening it: a second person must confirm")
        status = _all_met(gate)
        policy = _excluded_policy(gate.purpose, gate.jurisdiction)
        proposer = gate.proposed_by
        note = f"processing gate opened: proposed by {proposer}, confirmed by {by}"
        policy_set_mode(policy=policy, mode=gate.opens_to, by=by, note=note, perm=OPEN)
        gate.state, gate.opened_at = GateState.OPEN, timezone.now()
        gate.save(update_fields=["state", "opened_at"])
        detail = {**_conditions_detail(status), "proposed_by": str(proposer)}
        _step(gate, GateStep.OPENED, by, detail=detail)
        staff_action_record(by=by, action=Action.GATE_OPEN, target=gate, detail=detail)
    return status


def gate_close(*, gate: Gate, by: User, reason: str = "") -> GateStep:
    """Close an open gate at once (the policy back to excluded, the feed follows), or
    withdraw a pending proposal on a closed one. One person suffices."""
    permission_require(by=by, perm=CLOSE)
    reason = reason.strip()[:300]
    with transaction.atomic():
        gate = _locked(gate)
        if gate.state == GateState.OPEN:
            step, action = GateStep.CLOSED, Action.GATE_CLOSE
            policy = _policy(gate.purpose, gate.jurisdiction)
            note = f"processing gate closed by {by}" + (f": {reason}" if reason else "")
            policy_set_mode(policy=policy, mode=PolicyMode.EXCLUDED, by=by, note=note, perm=CLOSE)
            gate.state = GateState.CLOSED
        elif gate.proposed_by_id is not None:
            step, action = GateStep.WITHDRAWN, Action.GATE_WITHDRAW
        else:
            raise GateRefused("the gate is closed and no opening is proposed")
        gate.proposed_by, gate.proposed_at = None, None
        gate.save(update_fields=["state", "proposed_by", "proposed_at"])
        _step(gate, step, by, reason=reason)
        staff_action_record(
            by=by, action=action, target=gate, detail={"reason": reason} if reason else None
        )
    return step


def consumer_confirmation_record(
    *, gate: Gate, statement: str, cursor: int, by: User
) -> ConsumerConfirmation:
    """An Approver's signed confirmation that the purpose's feed is applied downstream up
    to ``cursor``: counts only while no consumer is registered, and only while it
    covers the feed's head."""
    permission_require(by=by, perm=CONFIRM)
    statement = statement.strip()
    if not statement:
        raise GateRefused("say what was applied, where and how you know it")
    if len(statement) > STATEMENT_LONGEST:
        raise GateRefused(f"the statement is longer than {STATEMENT_LONGEST} characters")
    if consumers := suppression_consumers():
        names = ", ".join(c.name for c in consumers)
        raise GateRefused(f"consumers are registered ({names}): their own reports count")
    head = suppression_feed_head(purpose=gate.purpose)
    if not 0 <= cursor <= head:
        raise GateRefused(f"cursor {cursor} is not in the feed (its head is {head})")
    with transaction.atomic():
        gate = _locked(gate)
        confirmation = ConsumerConfirmation(
            gate=gate, by=by, username=by.get_username(), statement=statement, cursor=cursor
        )
        confirmation.signature = confirmation_sign(confirmation)
        confirmation.save()
        detail = {"cursor": cursor, "head": head, "signature": confirmation.signature}
        _step(gate, GateStep.CONSUMERS_CONFIRMED, by, detail={**detail, "statement": statement})
        staff_action_record(by=by, action=Action.GATE_CONSUMERS_CONFIRM, target=gate, detail=detail)
    return confirmation


def _terms_check(terms: GateTerms) -> list[Campaign]:
    if terms.opens_to not in OpensTo.values:
        raise GateRefused(f"a gate opens to one of {', '.join(OpensTo.values)}")
    if terms.planned_opening < timezone.localdate():
        raise GateRefused("the planned opening is in the past")
    if not 0 <= terms.window_days <= 3650:
        raise GateRefused("the objection window is between 0 and 3650 days")
    if not (terms.reach_percent.is_finite() and 0 <= terms.reach_percent <= 100):
        raise GateRefused("the reach is a percentage between 0 and 100")
    if terms.reach_percent != round(terms.reach_percent, 2):
        raise GateRefused("the reach has at most two decimals")
    campaigns = list(Campaign.objects.filter(pk__in=terms.campaign_ids).order_by("pk"))
    if not campaigns:
        raise GateRefused("name at least one campaign that told members there")
    if len(campaigns) != len(set(terms.campaign_ids)):
        raise GateRefused("a named campaign does not exist")
    return campaigns


def _policy(purpose: Purpose, jurisdiction: str) -> JurisdictionPolicy:
    policy = JurisdictionPolicy.objects.filter(purpose=purpose, jurisdiction=jurisdiction).first()
    if policy is None:
        raise GateRefused(f"{purpose.slug} has no policy for {jurisdiction}")
    return policy


def _excluded_policy(purpose: Purpose, jurisdiction: str) -> JurisdictionPolicy:
    policy = _policy(purpose, jurisdiction)
    if policy.mode != PolicyMode.EXCLUDED:
        raise GateRefused(
            f"{purpose.slug} is {policy.mode} in {jurisdiction}, not excluded: nothing to gate"
        )
    return policy


def _locked(gate: Gate) -> Gate:
    # Only the gate's row: the proposer is an outer join, which PostgreSQL cannot lock.
    locked = Gate.objects.select_for_update(of=("self",))
    return locked.select_related("purpose", "proposed_by").get(pk=gate.pk)


def _all_met(gate: Gate) -> GateStatus:
    status = gate_evaluate(gate=gate)
    if status.unmet:
        unmet = "; ".join(f"{c.label.lower()} ({c.figure})" for c in status.unmet)
        raise GateRefused(f"not every condition is met: {unmet}")
    return status


def _conditions_detail(status: GateStatus) -> dict[str, Any]:
    return {
        "conditions": [{"key": c.key, "met": c.met, "figure": c.figure} for c in status.conditions]
    }


def _terms_detail(gate: Gate, campaigns: list[Campaign]) -> dict[str, Any]:
    return {
        "opens_to": gate.opens_to,
        "planned_opening": gate.planned_opening.isoformat(),
        "campaigns": [c.pk for c in campaigns],
        "window_days": gate.window_days,
        "reach_percent": str(Decimal(gate.reach_percent).normalize()),
    }


def _step(gate: Gate, step: GateStep, by: User, *, reason: str = "", detail=None) -> GateEvent:
    return GateEvent.objects.create(
        gate=gate,
        step=step,
        by=by,
        username=by.get_username(),
        reason=reason,
        detail=detail or {},
    )
