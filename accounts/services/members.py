"""Staff actions on members, and the one way a member's address changes.

An address's health (bounced, complained) and the member's unsubscribe are separate
facts with separate owners: staff ("Mail again") or a new address reset the health,
only the member's own ledger events (``consent_record``) set or clear the unsubscribe.
Nothing here touches ``Member.unsubscribed_at``.
"""

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.models import EmailStatus, EmailStatusChange, Member
from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from config.fields import clipped

# Staff may clear what the address did (bounce, complaint), never what the person
# chose: an unsubscribe is not an address status at all.
CLEARABLE = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED)

# A new address has no history with mail servers: its health starts again here. The
# importer's set-based upsert applies the same rule in SQL (``db.member_import``).
HEALTH_OF_NEW_ADDRESS = EmailStatus.OK


def address_normal(email: str) -> str:
    """The address as stored: trimmed, domain in lower case (as the importer stores it)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


@transaction.atomic
def member_email_status_clear(*, member: Member, by: User, reason: str) -> EmailStatusChange | None:
    """Set a bounced or complained address back to OK, with an audit row; None if not
    clearable. A member who unsubscribed stays unsubscribed (and unreachable). Needs
    ``accounts.clear_address``."""
    permission_require(by=by, perm="accounts.clear_address")
    locked = Member.objects.select_for_update().get(pk=member.pk)
    if locked.email_status not in CLEARABLE:
        return None
    change = _health_set(locked, EmailStatus.OK, by=by, reason=reason)
    staff_action_record(
        by=by,
        action=Action.ADDRESS_CLEAR,
        target=locked,
        changes={"email_status": (change.from_status, change.to_status)},
        detail={"reason": reason},
    )
    return change


@transaction.atomic
def member_address_change(*, member: Member, email: str, by: User, reason: str) -> bool:
    """Give the member a new address; False when it is the one they have.

    The new address's health is ``HEALTH_OF_NEW_ADDRESS`` (a bounce or complaint of the
    old one is audited as cleared); the member's unsubscribe stays as it is. Needs
    ``accounts.change_member``."""
    permission_require(by=by, perm="accounts.change_member")
    locked = Member.objects.select_for_update().get(pk=member.pk)
    email = address_normal(email)
    if email == locked.email:
        return False
    if locked.email_status != HEALTH_OF_NEW_ADDRESS:
        _health_set(locked, HEALTH_OF_NEW_ADDRESS, by=by, reason=reason)
    Member.objects.filter(pk=locked.pk).update(email=email, updated_at=timezone.now())
    member.email = email
    # Which member, not which addresses: the trail is no second copy of personal data.
    staff_action_record(
        by=by, action=Action.ADDRESS_CHANGE, target=locked, detail={"reason": reason}
    )
    return True


def _health_set(locked: Member, status: EmailStatus, *, by: User, reason: str) -> EmailStatusChange:
    change = EmailStatusChange.objects.create(
        member=locked,
        from_status=locked.email_status,
        to_status=status,
        changed_by=by,
        reason=clipped(EmailStatusChange, "reason", reason),
    )
    Member.objects.filter(pk=locked.pk).update(
        email_status=status, email_status_changed_at=change.changed_at
    )
    return change
