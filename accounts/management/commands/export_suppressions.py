import os
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Purpose
from accounts.services.suppression_export import FORMATS, suppressions_export
from audit.models import Action
from audit.services import staff_action_record, system_detail


class Command(BaseCommand):
    help = (
        "Stream every member whose effective state for a purpose is 'out' (objected, "
        "excluded by jurisdiction, or not opted in) as CSV or JSON Lines: external_id, "
        "jurisdiction, reason, since."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--purpose", required=True, help="purpose slug, e.g. ai-training")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, purpose: str, format: str, output: str | None, **options) -> None:
        try:
            chosen = Purpose.objects.get(slug=purpose)
        except Purpose.DoesNotExist:
            known = ", ".join(Purpose.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"unknown purpose {purpose!r} (known: {known})") from None
        # Who ran it is the shell's to say; that it ran, and what went where, is ours.
        staff_action_record(
            by=None,
            action=Action.EXPORT,
            target=chosen,
            detail={
                **system_detail(),
                "what": "suppression list",
                "format": format,
                "file": output or "standard output",
            },
        )
        if output:
            with open(output, "wb") as out:
                count = suppressions_export(purpose=chosen, out=out, fmt=format)
            self.stderr.write(f"wrote {count} suppressed member(s) to {output}")
        else:
            try:
                suppressions_export(purpose=chosen, out=sys.stdout.buffer, fmt=format)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                _end_quietly_on_closed_pipe()


def _end_quietly_on_closed_pipe() -> None:
    """The reader went away (``| head``): stop as a process killed by SIGPIPE would
    (status 141), without a traceback, and with nothing left to flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + 13)
