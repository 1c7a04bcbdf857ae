"""Purposes and the per-jurisdiction policy that decides their defaults.

A policy may carry a planned change (``planned_mode`` from ``planned_from``), which a
processing gate sets while the place is excluded so that members are told of it; any
change of the mode itself clears the plan (it was a plan to leave the old mode).
"""

from datetime import date

from django.contrib.auth.models import User
from django.db import transaction

from accounts.jurisdictions import Jurisdiction
from accounts.models import (
    DEFAULT_POLICY_MODE,
    GpcMode,
    JurisdictionPolicy,
    JurisdictionPolicyChange,
    PolicyMode,
    Purpose,
)
from accounts.permissions import permission_require
from accounts.services.suppression_feed import suppression_feed_sync_after_commit
from audit.models import Action
from audit.services import staff_action_record


@transaction.atomic
def purpose_create(
    *,
    slug: str,
    name: str,
    description: str = "",
    modes: dict[str, PolicyMode] | None = None,
    gpc_mode: GpcMode | str = GpcMode.IGNORED,
    by: User | None = None,
) -> Purpose:
    """Create a purpose with a policy row for every jurisdiction (opt-in where not given)
    and what a Global Privacy Control signal means for it. Needs ``accounts.add_purpose``."""
    permission_require(by=by, perm="accounts.add_purpose")
    purpose = Purpose.objects.create(
        slug=slug, name=name, description=description, gpc_mode=GpcMode(gpc_mode)
    )
    for jurisdiction in Jurisdiction:
        mode = (modes or {}).get(jurisdiction, DEFAULT_POLICY_MODE)
        policy = JurisdictionPolicy.objects.create(
            purpose=purpose, jurisdiction=jurisdiction, mode=mode
        )
        JurisdictionPolicyChange.objects.create(
            policy=policy, to_mode=mode, changed_by=by, note="created with the purpose"
        )
    if by is not None:
        staff_action_record(
            by=by,
            action=Action.PURPOSE_CREATE,
            target=purpose,
            detail={"slug": slug, "gpc_mode": purpose.gpc_mode, "modes": dict(modes or {})},
        )
    # Every member gets the new purpose's first entry (set-based, once this commits).
    suppression_feed_sync_after_commit(purpose=purpose)
    return purpose


POLICY_CHANGE_PERM = "accounts.change_jurisdictionpolicy"


class PolicyHeldByGate(ValueError):
    """The place is held by a processing gate: only the gate may stop excluding there."""


def policy_gate_hold(*, policy: JurisdictionPolicy) -> None:
    """Put ``policy`` under a processing gate from now on (the gate's services call it
    when the gate is defined, after their own permission check and audit entry)."""
    JurisdictionPolicy.objects.filter(pk=policy.pk).update(gated=True)


@transaction.atomic
def policy_set_mode(
    *,
    policy: JurisdictionPolicy,
    mode: PolicyMode | str,
    by: User | None,
    note: str = "",
    perm: str = POLICY_CHANGE_PERM,
) -> JurisdictionPolicyChange | None:
    """Change a jurisdiction's mode for a purpose, with an audit row, and drop any
    planned change; None if unchanged. Needs ``perm``: ``accounts.change_jurisdictionpolicy``
    unless a caller with its own authority over the change names another (a processing
    gate opens and closes with the gate's permissions). A place held by a gate is not
    taken out of "excluded" on that plain permission (``PolicyHeldByGate``); excluding
    again, the safe direction, stays open to it."""
    permission_require(by=by, perm=perm)
    policy = JurisdictionPolicy.objects.select_for_update().get(pk=policy.pk)
    mode = PolicyMode(mode)
    if policy.mode == mode:
        return None
    opening = policy.mode == PolicyMode.EXCLUDED
    if policy.gated and opening and perm == POLICY_CHANGE_PERM:
        raise PolicyHeldByGate(
            f"{policy.purpose.slug} in {policy.jurisdiction} is held by a processing gate:"
            " it opens from the gate's page (Console, Gates), once its conditions are met"
            " and a second person confirms"
        )
    change = JurisdictionPolicyChange.objects.create(
        policy=policy, from_mode=policy.mode, to_mode=mode, changed_by=by, note=note
    )
    policy.mode, policy.mode_since = mode, change.changed_at
    policy.planned_mode, policy.planned_from = "", None
    policy.save(update_fields=["mode", "mode_since", "planned_mode", "planned_from"])
    if by is not None:
        staff_action_record(
            by=by,
            action=Action.POLICY_CHANGE,
            target=policy,
            changes={"mode": (change.from_mode, change.to_mode)},
            detail={"note": note} if note else None,
        )
    # An entry for every member there whose state or reason changes (set-based).
    suppression_feed_sync_after_commit(purpose=policy.purpose, jurisdiction=policy.jurisdiction)
    return change


@transaction.atomic
def policy_plan_set(
    *,
    policy: JurisdictionPolicy,
    planned_mode: PolicyMode | str | None,
    planned_from: date | None,
) -> bool:
    """Announce (or, with ``planned_mode=None``, withdraw) a planned change of an
    excluded policy: what members there are told until it happens. Changes no one's
    effective state, so the feed is not touched. False when nothing changed; refused
    (ValueError) for a policy that does not exclude, or a plan without a date.

    Not a staff action of its own: the processing gate's services call it, after
    checking their own permission and recording their own entry (defining or changing
    the gate is what staff did)."""
    policy = JurisdictionPolicy.objects.select_for_update().get(pk=policy.pk)
    mode = PolicyMode(planned_mode) if planned_mode else None
    if mode is not None and (policy.mode != PolicyMode.EXCLUDED or planned_from is None):
        raise ValueError("only an excluded policy can have a planned change, with its date")
    wanted = (mode.value if mode else "", planned_from if mode else None)
    if (policy.planned_mode, policy.planned_from) == wanted:
        return False
    policy.planned_mode, policy.planned_from = wanted
    policy.save(update_fields=["planned_mode", "planned_from"])
    return True
