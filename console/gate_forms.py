"""The form staff define or change a processing gate with: field rules only; what the
terms must satisfy between themselves and against the data (an excluded place, a date
not in the past, existing campaigns) is the service's to refuse (``gates.services``)."""

from django import forms
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction
from accounts.models import Purpose
from campaigns.models import Campaign
from gates.models import Gate, OpensTo
from gates.services import GateTerms


class GateForm(forms.Form):
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("slug"), to_field_name="slug"
    )
    jurisdiction = forms.ChoiceField(choices=Jurisdiction.choices)
    opens_to = forms.ChoiceField(choices=OpensTo.choices, label="Opens to")
    planned_opening = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Members there read: not used yet, planned from this date unless they object.",
    )
    campaigns = forms.ModelMultipleChoiceField(
        queryset=Campaign.objects.order_by("-created_at"),
        help_text="Campaigns that told members there; each must be completed.",
    )
    window_days = forms.IntegerField(
        min_value=0, max_value=3650, initial=30, label="Objection window (days)"
    )
    reach_percent = forms.DecimalField(
        min_value=0, max_value=100, max_digits=5, decimal_places=2, initial=90, label="Reach (%)"
    )

    def __init__(self, *args, gate: Gate | None = None, **kwargs) -> None:
        if gate is not None:
            kwargs.setdefault("initial", gate_initial(gate))
        super().__init__(*args, **kwargs)
        self.fields["planned_opening"].widget.attrs["min"] = timezone.localdate().isoformat()
        if gate is not None:  # the place of a gate never changes
            for name in ("purpose", "jurisdiction"):
                self.fields[name].disabled = True

    def terms(self) -> GateTerms:
        data = self.cleaned_data
        return GateTerms(
            opens_to=data["opens_to"],
            planned_opening=data["planned_opening"],
            campaign_ids=[c.pk for c in data["campaigns"]],
            window_days=data["window_days"],
            reach_percent=data["reach_percent"],
        )


def gate_initial(gate: Gate) -> dict:
    return {
        "purpose": gate.purpose.slug,
        "jurisdiction": gate.jurisdiction,
        "opens_to": gate.opens_to,
        "planned_opening": gate.planned_opening,
        "campaigns": list(gate.campaigns.all()),
        "window_days": gate.window_days,
        "reach_percent": gate.reach_percent,
    }
