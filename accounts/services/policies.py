"""Purposes and the per-jurisdiction policy that decides their defaults."""

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


@transaction.atomic
def policy_set_mode(
    *,
    policy: JurisdictionPolicy,
    mode: PolicyMode | str,
    by: User | None,
    note: str = "",
) -> JurisdictionPolicyChange | None:
    """Change a jurisdiction's mode for a purpose, with an audit row; None if unchanged.
    Needs ``accounts.change_jurisdictionpolicy``."""
    permission_require(by=by, perm="accounts.change_jurisdictionpolicy")
    policy = JurisdictionPolicy.objects.select_for_update().get(pk=policy.pk)
    mode = PolicyMode(mode)
    if policy.mode == mode:
        return None
    change = JurisdictionPolicyChange.objects.create(
        policy=policy, from_mode=policy.mode, to_mode=mode, changed_by=by, note=note
    )
    policy.mode, policy.mode_since = mode, change.changed_at
    policy.save(update_fields=["mode", "mode_since"])
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
