from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.services.ledger_checks import ledger_check_run
from accounts.services.ledger_heads import ledger_heads_read
from accounts.services.ledger_replay import ledger_replay_mismatches

# Mismatches printed in full; the rest are counted.
SHOWN = 100


class Command(BaseCommand):
    help = (
        "Verify the consent ledger's hash chain (and, with --against, every head recorded "
        "in a sink file), then replay the ledger into each member's preferences and "
        "unsubscribe state. Exits 0 when all agree; otherwise prints the first broken "
        "sequence number and the members whose stored state has no event behind it, and "
        "exits 1. Each run is recorded (admin: Ledger checks)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--against",
            metavar="FILE",
            help="a file of heads written by RENOTIFY_LEDGER_HEAD_SINK (JSON lines, or syslog "
            "lines tagged renotify-ledger-head): each recorded head must still be in the ledger",
        )

    def handle(self, *args, against: str | None = None, **options) -> None:
        heads = _heads(against) if against else []
        check = ledger_check_run(recorded_heads=heads)
        problems = []
        if check.intact:
            self.stdout.write(
                self.style.SUCCESS(f"ledger intact: {check.events_checked} events verified")
            )
            if against:
                self.stdout.write(f"{len(heads)} recorded heads agree with the ledger")
        else:
            problems.append(
                f"ledger broken at sequence number {check.first_broken_seq}: {check.detail}"
            )
        mismatches = self._replay()
        if mismatches:
            problems.append(f"{mismatches} member state(s) differ from the ledger")
        if problems:
            raise CommandError("; ".join(problems), returncode=1)

    def _replay(self) -> int:
        """Print the mismatches (the first SHOWN); return how many there are."""
        count = 0
        for count, mismatch in enumerate(ledger_replay_mismatches(), start=1):
            if count <= SHOWN:
                self.stdout.write(f"{mismatch.external_id}: {mismatch.problem}")
        if count > SHOWN:
            self.stdout.write(f"... and {count - SHOWN} more")
        if not count:
            self.stdout.write(self.style.SUCCESS("stored state matches the ledger"))
        return count


def _heads(path: str):
    try:
        with Path(path).open(encoding="utf-8") as lines:
            return ledger_heads_read(lines)
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read recorded heads from {path}: {error}") from error
