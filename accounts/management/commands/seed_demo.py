"""Demo data for `make demo`: a staff login and a few thousand synthetic members."""

import random
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from accounts.jurisdictions import jurisdiction_for
from accounts.models import Action, Member, Purpose, Source
from accounts.services.consent import consent_record

# (country, locale, weight): UK and EU heavy, as for a platform re-notifying there.
POPULATION = [
    ("GB", "en", 30),
    ("DE", "de", 14),
    ("AT", "de", 3),
    ("FR", "fr", 12),
    ("BE", "fr", 3),
    ("IE", "en", 3),
    ("NL", "en", 3),
    ("ES", "en", 3),
    ("IT", "en", 3),
    ("PL", "en", 2),
    ("NO", "en", 2),
    ("IS", "en", 1),
    ("LI", "de", 1),
    ("CH", "de", 3),
    ("CH", "fr", 2),
    ("US", "en", 12),
    ("CA", "fr", 2),
    ("BR", "en", 2),
    ("JP", "en", 1),
]
CREDENTIALS_FILE = "demo-login.txt"


class Command(BaseCommand):
    help = "Create the demo staff login and synthetic members (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--members", type=int, default=3000)

    def handle(self, *args, members: int, **options) -> None:
        username, password = self._staff_login()
        if Member.objects.exists():
            self.stdout.write("demo members already present")
        else:
            self._members(members)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nRenotify demo: sign in at {settings.SITE_URL}/console/login/ as "
                f"{username} / {password}\n(saved in var/{CREDENTIALS_FILE})\n"
            )
        )

    def _staff_login(self) -> tuple[str, str]:
        path = settings.VAR_DIR / CREDENTIALS_FILE
        User = get_user_model()
        if path.exists() and User.objects.filter(username="admin").exists():
            username, password = path.read_text().split()
            return username, password
        password = secrets.token_urlsafe(12)
        user, _created = User.objects.get_or_create(
            username="admin", defaults={"email": "privacy-lead@localhost"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        path.write_text(f"admin {password}\n")
        path.chmod(0o600)
        return "admin", password

    def _members(self, count: int) -> None:
        rng = random.Random(2026)
        places = [(c, loc) for c, loc, _w in POPULATION]
        weights = [w for _c, _l, w in POPULATION]
        now = timezone.now()
        rows = []
        for n in range(1, count + 1):
            country, locale = rng.choices(places, weights)[0]
            rows.append(
                Member(
                    external_id=f"demo-{n:05d}",
                    email=f"member{n:05d}@example.com",
                    locale=locale,
                    country=country,
                    jurisdiction=jurisdiction_for(country),
                    created_at=now - timedelta(days=rng.randint(30, 3000)),
                )
            )
        Member.objects.bulk_create(rows, batch_size=1000)
        self._some_choices(rng, count)
        self.stdout.write(f"created {count} demo members")

    def _some_choices(self, rng: random.Random, count: int) -> None:
        """A few objections and opt-ins, recorded through the ledger like real ones."""
        purpose = Purpose.objects.get(slug="ai-training")
        chosen = [f"demo-{n:05d}" for n in rng.sample(range(1, count + 1), min(60, count))]
        for member in Member.objects.filter(external_id__in=chosen).order_by("pk"):
            action = Action.OBJECT if rng.random() < 0.8 else Action.OPT_IN
            consent_record(
                member=member,
                action=action,
                source=Source.PREFERENCE_PAGE,
                purpose=purpose,
            )
