"""Print signed links to members' standing preference pages, for the platform to use
in its own settings page or in-app banners."""

import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Member
from audit.models import Action
from audit.services import staff_action_record, system_detail
from campaigns.tokens import preferences_url


class Command(BaseCommand):
    help = "Print the signed preference-page link of each member (by external id), tab-separated."

    def add_arguments(self, parser) -> None:
        parser.add_argument("external_ids", nargs="*", help="external ids; none: read from stdin")

    def handle(self, *args, external_ids: list[str], **options) -> None:
        wanted = external_ids or [line.strip() for line in sys.stdin if line.strip()]
        found = dict(Member.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
        # Links that act for members: that they were printed, and how many, is recorded
        # (never the links themselves).
        staff_action_record(
            by=None,
            action=Action.EXPORT,
            detail={**system_detail(), "what": "preference links", "members": len(found)},
        )
        for external_id in wanted:
            if external_id in found:
                self.stdout.write(f"{external_id}\t{preferences_url(found[external_id])}")
        missing = [e for e in wanted if e not in found]
        if missing:
            raise CommandError(f"unknown external id(s): {', '.join(missing[:20])}", returncode=1)
