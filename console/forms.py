"""The campaign flow's steps as forms: each validates its part of a campaign, with the
model's own field rules (max lengths, choices, non-negative numbers) and the few rules
between fields the model leaves to its forms.

Every step's values travel with every POST (the steps not shown as hidden inputs, see
``console.views.create``), so a step is valid or not from the request alone."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction, normalise_country
from accounts.locales import locale_normalise
from accounts.models import Choice, Purpose
from campaigns.models import Campaign, NoticeText, NoticeVersion
from campaigns.variants import VariantRow, split_problems

# datetime-local inputs send and show "2027-03-01T09:30"; hidden copies use the same
# spelling so a value carried to a later step and back shows in its input again.
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"


class _HiddenMinute(forms.HiddenInput):
    def format_value(self, value: Any) -> str | None:
        if isinstance(value, datetime):
            return value.strftime(LOCAL_MINUTE)
        return super().format_value(value)


class MinuteField(forms.DateTimeField):
    """A date and time to the minute, in the site's time zone (``datetime-local``)."""

    widget = forms.DateTimeInput(format=LOCAL_MINUTE, attrs={"type": "datetime-local"})
    hidden_widget = _HiddenMinute


class CommaListField(forms.Field):
    """A JSON list typed as "GB, DE, FR" (hidden copies are the same text)."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        return [item.strip() for item in (value or "").split(",") if item.strip()]


def versions_offered():
    """Notice versions a campaign can name: those with at least one text."""
    has_text = NoticeText.objects.filter(version=OuterRef("pk"))
    return (
        NoticeVersion.objects.filter(Exists(has_text))
        .select_related("notice")
        .order_by("notice__title", "notice_id", "-number")
    )


# A wording test on the version step: the picked version's share, and up to three more
# versions of the same notice with theirs (percent to two decimals, stored as basis points).
MORE_VARIANTS = (2, 3, 4)
VARIANT_FIELDS = frozenset(
    {"share", *(f"variant_{n}_{part}" for n in MORE_VARIANTS for part in ("version", "share"))}
)


def _share_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        required=False,
        max_digits=4,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal("99.99"),
        label=label,
    )


class DateRangeForm(forms.Form):
    """A filter form with optional ``since`` and ``until`` dates, refused the wrong way
    round (the subclass declares both fields)."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The start date is after the end date.")
        return data


class VersionStep(forms.ModelForm):
    notice_version = forms.ModelChoiceField(
        queryset=versions_offered(),
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={"required": "Pick the notice version this campaign sends."},
    )

    class Meta:
        model = Campaign
        fields = ["name", "notice_version"]
        help_texts = {"name": "For staff only; members never see it."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not model fields: added here, so the flow's copy of the campaign's values
        # (``base_fields``) leaves them out; the lifecycle saves them (variants=).
        self.fields["share"] = _share_field("Share of the version picked above (%)")
        for n in MORE_VARIANTS:
            self.fields[f"variant_{n}_version"] = forms.ModelChoiceField(
                queryset=versions_offered(), required=False, label=f"Version {n}"
            )
            self.fields[f"variant_{n}_share"] = _share_field(f"Share of version {n} (%)")

    def variant_rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        """The wording test's inputs after the picked version: (label, version, share)."""
        return [
            (f"Version {n}", self[f"variant_{n}_version"], self[f"variant_{n}_share"])
            for n in MORE_VARIANTS
        ]

    def variants(self) -> list[tuple[NoticeVersion, int]]:
        """The wording test as entered ((version, basis points), the picked version
        first); empty for none. Only on a valid form."""
        data = self.cleaned_data
        rows = self._rows(data)
        return [(version, share) for version, share, _label in rows if version and share]

    def _rows(self, data: dict[str, Any]) -> list[tuple[NoticeVersion | None, int | None, str]]:
        more = [
            (data.get(f"variant_{n}_version"), data.get(f"variant_{n}_share"), f"version {n}")
            for n in MORE_VARIANTS
        ]
        more = [row for row in more if row[0] is not None or row[1] is not None]
        if data.get("share") is None and not more:
            return []
        picked = data.get("notice_version")
        rows = [(picked, data.get("share"), "the version picked above"), *more]
        return [(v, None if s is None else int(s * 100), label) for v, s, label in rows]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        picked = data.get("notice_version")
        if picked is None or any(name in self.errors for name in VARIANT_FIELDS):
            return data
        rows = self._rows(data)
        for problem in split_problems(
            notice_id=picked.notice_id,
            rows=[
                VariantRow(v.pk if v else None, v.notice_id if v else None, share, label)
                for v, share, label in rows
            ],
        ):
            self.add_error(None, problem)
        return data


class AudienceStep(forms.ModelForm):
    jurisdictions = forms.MultipleChoiceField(
        choices=Jurisdiction.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every jurisdiction.",
    )
    countries = CommaListField(
        required=False, help_text="ISO codes separated by commas, e.g. GB, IE. Empty: any."
    )
    locales = CommaListField(
        required=False, help_text="Separated by commas, e.g. en, de-at. Empty: any."
    )
    members_created_after = MinuteField(
        required=False, label="Signed up from", help_text="Empty: since the beginning."
    )
    members_created_before = MinuteField(
        required=False, label="Signed up before", help_text="Empty: up to now."
    )
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"),
        required=False,
        empty_label="(any)",
        help_text="With a state: only members whose current state for it is that.",
    )
    purpose_state = forms.ChoiceField(
        choices=[("", "(any)"), *Choice.choices], required=False, label="Its current state"
    )

    class Meta:
        model = Campaign
        fields = [
            "jurisdictions",
            "countries",
            "locales",
            "members_created_after",
            "members_created_before",
            "purpose",
            "purpose_state",
            "only_not_acknowledged",
        ]
        labels = {"only_not_acknowledged": "Only members who have not acknowledged it yet"}
        help_texts = {
            "only_not_acknowledged": "Leaves out members who acknowledged any version of "
            "this notice.",
        }

    def clean_countries(self) -> list[str]:
        pairs = [(code, normalise_country(code)) for code in self.cleaned_data["countries"]]
        unknown = [code for code, known in pairs if known is None]
        if unknown:
            raise forms.ValidationError(f"Unknown country code: {', '.join(unknown)}.")
        return sorted({known for _, known in pairs if known is not None})

    def clean_locales(self) -> list[str]:
        return sorted({locale_normalise(locale) for locale in self.cleaned_data["locales"]})

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("purpose")) != bool(data.get("purpose_state")):
            self.add_error("purpose_state", "Choose both a purpose and its state, or neither.")
        after, before = data.get("members_created_after"), data.get("members_created_before")
        if after and before and after >= before:
            self.add_error("members_created_before", "Must be after “Signed up from”.")
        return data


class ScheduleStep(forms.ModelForm):
    starts_at = MinuteField(
        required=False,
        label="Start",
        help_text="Empty: the approver sets it when scheduling.",
    )
    window_ends_at = MinuteField(
        required=False,
        label="Sending window ends",
        help_text="Sending stops here; what is left is marked expired. Empty: no end.",
    )

    class Meta:
        model = Campaign
        fields = [
            "starts_at",
            "window_ends_at",
            "throttle_per_minute",
            "remind_after_days",
            "max_reminders",
        ]
        labels = {
            "throttle_per_minute": "Messages per minute",
            "remind_after_days": "Remind after (days)",
            "max_reminders": "At most (reminders)",
        }
        help_texts = {
            "remind_after_days": "Members who have not acknowledged after this many days. "
            "Empty: no reminders.",
        }

    def clean_starts_at(self) -> datetime | None:
        # An edit that leaves an old start alone is the approver's to reschedule.
        starts_at = self.cleaned_data["starts_at"]
        if starts_at and "starts_at" in self.changed_data and starts_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return starts_at

    def clean_throttle_per_minute(self) -> int:
        throttle = self.cleaned_data["throttle_per_minute"]
        if throttle < 1:
            raise forms.ValidationError("At least 1 message a minute.")
        return throttle

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        starts, ends = data.get("starts_at"), data.get("window_ends_at")
        if starts and ends and ends <= starts:
            self.add_error("window_ends_at", "Must be after the start.")
        after, most = data.get("remind_after_days"), data.get("max_reminders") or 0
        if after == 0:
            self.add_error("remind_after_days", "At least 1 day, or empty for no reminders.")
        elif after and most < 1:
            self.add_error("max_reminders", "At least 1 when reminding, or empty the days.")
        elif most and not after:
            self.add_error("remind_after_days", "Say after how many days to remind.")
        return data


STEP_FORMS: dict[str, type[forms.ModelForm]] = {
    "version": VersionStep,
    "audience": AudienceStep,
    "schedule": ScheduleStep,
}
