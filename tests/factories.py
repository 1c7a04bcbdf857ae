import importlib

import factory
from django.utils import timezone

from accounts.jurisdictions import jurisdiction_for
from accounts.models import Member, Purpose
from accounts.services.policies import purpose_create


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    external_id = factory.Sequence(lambda n: f"user-{n:06d}")
    email = factory.LazyAttribute(lambda m: f"{m.external_id}@example.com")
    locale = "en"
    country = "GB"
    jurisdiction = factory.LazyAttribute(lambda m: jurisdiction_for(m.country))
    created_at = factory.LazyFunction(timezone.now)


def ai_training() -> Purpose:
    """The purpose seeded by migration 0003 (UK/EU/EEA/CH excluded, elsewhere opt-out).

    A transactional test's flush empties every table, seeds included: seed it again.
    """
    seed = importlib.import_module("accounts.migrations.0003_seed_ai_training")
    existing = Purpose.objects.filter(slug=seed.SLUG).first()
    if existing:
        return existing
    modes = {j: "excluded" if j in seed.EXCLUDED_IN else "opt_out" for j in seed.JURISDICTIONS}
    return purpose_create(slug=seed.SLUG, name="AI training", modes=modes)
