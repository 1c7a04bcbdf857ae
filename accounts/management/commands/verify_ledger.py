from django.core.management.base import BaseCommand, CommandError

from accounts.services.ledger_checks import ledger_check_run


class Command(BaseCommand):
    help = (
        "Verify the consent ledger's hash chain. Exits 0 when intact; on a break prints "
        "the first broken sequence number and exits 1. Each run is recorded (admin: Ledger checks)."
    )

    def handle(self, *args, **options) -> None:
        check = ledger_check_run()
        if not check.intact:
            raise CommandError(
                f"ledger broken at sequence number {check.first_broken_seq}: {check.detail}",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(f"ledger intact: {check.events_checked} events verified")
        )
