"""Demo staff for `make demo`, one per role that works a campaign: an editor, an
approver (the second person), and the demo's admin (made by ``seed_demo``) as the
Administrator. Idempotent: a second run prints the same logins."""

import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from console.roles import staff_role_assign

CREDENTIALS_FILE = "demo-staff-logins.txt"
DEMO_STAFF = {"editor": "Editor", "approver": "Approver"}


class Command(BaseCommand):
    help = "Create the demo's editor and approver, and give the demo admin its role."

    def handle(self, *args, **options) -> None:
        logins = self._logins()
        admin = User.objects.filter(username="admin").first()
        if admin is not None:
            staff_role_assign(user=admin, role="Administrator", by=None)
        lines = "\n".join(f"  {username} / {password}" for username, password in logins.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo staff: sign in at {settings.SITE_URL}/console/login/ as\n{lines}\n"
                f"(saved in var/{CREDENTIALS_FILE}; two-factor sign-in is optional with DEBUG on)\n"
            )
        )

    def _logins(self) -> dict[str, str]:
        path = settings.VAR_DIR / CREDENTIALS_FILE
        saved = (
            dict(line.split() for line in path.read_text().splitlines()) if path.exists() else {}
        )
        logins = {}
        for username, role in DEMO_STAFF.items():
            user, _created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@localhost"}
            )
            password = saved.get(username)
            if password is None or not user.check_password(password):
                password = secrets.token_urlsafe(12)
                user.set_password(password)
                user.save(update_fields=["password"])
            staff_role_assign(user=user, role=role, by=None)
            logins[username] = password
        path.write_text("".join(f"{u} {p}\n" for u, p in logins.items()))
        path.chmod(0o600)
        return logins
