"""Remove a staff member's second factor (a lost phone and lost recovery codes): their
next sign-in asks them to set up a new authenticator app. Acts as the system."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.roles import RoleError, staff_user_get
from console.twofactor import two_factor_reset


class Command(BaseCommand):
    help = "Remove a staff member's authenticator app and recovery codes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        try:
            user = staff_user_get(username)
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        gone = two_factor_reset(user=user)
        self.stdout.write(
            f"{username}: {gone} second factor{'' if gone == 1 else 's'} removed; "
            "their next sign-in sets up a new one"
        )
