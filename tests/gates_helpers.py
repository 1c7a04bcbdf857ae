"""A UK told of AI training by one completed campaign, and the people who gate it: shared
by the gate tests (services, command, API, console)."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import Member, Purpose
from accounts.services.ledger_checks import ledger_check_run
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from gates.models import Gate
from gates.services import GateTerms, gate_define
from tests.factories import MemberFactory, campaign, notice_version, staff_user

UK_MEMBERS = 10
DELIVERED_DAYS_AGO = 40
# Eight weeks on, whenever the tests run: a planned opening is never in the past.
PLANNED = timezone.localdate() + timedelta(weeks=8)
DEFINER = ("gates.view_gate", "gates.add_gate", "gates.change_gate")
APPROVER = ("gates.view_gate", "gates.open_gate", "gates.close_gate", "gates.confirm_consumers")


@dataclass
class Place:
    purpose: Purpose
    campaign: Campaign
    uk: list[Member]
    us: Member
    ada: User  # defines gates (an Administrator's permissions)
    ben: User  # an Approver
    cy: User  # another Approver

    def terms(self, **changes) -> GateTerms:
        fields = {
            "opens_to": "opt_out",
            "planned_opening": PLANNED,
            "campaign_ids": [self.campaign.pk],
            "window_days": 30,
            "reach_percent": Decimal(90),
            **changes,
        }
        return GateTerms(**fields)

    def gate(self, **changes) -> Gate:
        return gate_define(
            purpose=self.purpose, jurisdiction="UK", terms=self.terms(**changes), by=self.ada
        )


def told_place(purpose: Purpose) -> Place:
    """Ten UK members (and one US member) sent a UK campaign that completed, every notice
    delivered ``DELIVERED_DAYS_AGO`` days ago; the ledger verified since."""
    uk = [MemberFactory(country="GB") for _ in range(UK_MEMBERS)]
    us = MemberFactory(country="US")
    version = notice_version()
    type(version).objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    told = campaign(version=version, state=CampaignState.SENDING, jurisdictions=["UK"])
    campaign_fan_out(campaign=told)
    then = timezone.now() - timedelta(days=DELIVERED_DAYS_AGO)
    Delivery.objects.filter(campaign=told).update(
        status=DeliveryStatus.DELIVERED, sent_at=then, delivered_at=then
    )
    Campaign.objects.filter(pk=told.pk).update(state=CampaignState.COMPLETED)
    told.refresh_from_db()
    ledger_check_run()
    return Place(
        purpose=purpose,
        campaign=told,
        uk=uk,
        us=us,
        ada=staff_user("ada", *DEFINER),
        ben=staff_user("ben", *APPROVER),
        cy=staff_user("cy", *APPROVER),
    )
