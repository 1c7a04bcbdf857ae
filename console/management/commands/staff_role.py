"""Give a staff member a role, take it away, or list who holds which role.

    manage.py staff_role priya Approver
    manage.py staff_role priya Approver --remove
    manage.py staff_role --list

The command acts as the system (``by=None``): whoever can run it administers the server.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.roles import (
    ROLES,
    RoleError,
    staff_role_assign,
    staff_role_remove,
    staff_roles_held,
    staff_user_get,
)


class Command(BaseCommand):
    help = f"Give a staff member a role ({', '.join(ROLES)}), take it away, or list them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("role", nargs="?", help=", ".join(ROLES))
        parser.add_argument("--remove", action="store_true", help="take the role away")
        parser.add_argument("--list", action="store_true", help="who holds which role")

    def handle(self, *args, username, role, remove: bool, list: bool, **options) -> None:
        if list:
            if username or role or remove:
                raise CommandError("--list takes no username, role or --remove")
            self._list()
            return
        if not (username and role):
            raise CommandError("give a username and a role (or --list)")
        try:
            user = staff_user_get(username)
            if remove:
                changed = staff_role_remove(user=user, role=role, by=None)
            else:
                changed = staff_role_assign(user=user, role=role, by=None)
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self._said(username, role, remove, changed))

    def _list(self) -> None:
        for role, usernames in staff_roles_held().items():
            self.stdout.write(f"{role}: {', '.join(usernames) if usernames else '(nobody)'}")

    @staticmethod
    def _said(username: str, role: str, remove: bool, changed: bool) -> str:
        if remove:
            return (
                f"{username} no longer holds {role}"
                if changed
                else f"{username} did not hold {role}"
            )
        return f"{username} now holds {role}" if changed else f"{username} already held {role}"
