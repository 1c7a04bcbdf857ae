"""Staff actions on members."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import EmailStatus, EmailStatusChange, Member
from accounts.permissions import permission_require

# Staff may clear what the address did (bounce, complaint), never what the person
# chose: an unsubscribe is undone by the member, on their preference page.
CLEARABLE = (EmailStatus.BOUNCED, EmailStatus.COMPLAINED)


@transaction.atomic
def member_email_status_clear(
    *, member: Member, by: AbstractBaseUser, reason: str
) -> EmailStatusChange | None:
    """Set a bounced or complained address back to OK, with an audit row; None if not
    clearable. Needs ``accounts.clear_address``."""
    permission_require(by=by, perm="accounts.clear_address")
    locked = Member.objects.select_for_update().get(pk=member.pk)
    if locked.email_status not in CLEARABLE:
        return None
    change = EmailStatusChange.objects.create(
        member=locked,
        from_status=locked.email_status,
        to_status=EmailStatus.OK,
        changed_by=by,
        reason=reason,
    )
    Member.objects.filter(pk=locked.pk).update(
        email_status=EmailStatus.OK, email_status_changed_at=timezone.now()
    )
    return change
