"""Processing gates in the console: the list, a gate's page (each condition met or unmet
with its figure, the history, exactly the buttons the viewer may press), defining and
changing a gate, and one POST endpoint for the buttons (one row of ``ACTIONS`` each).

The table drives both the buttons shown (``gate_actions_allowed``) and what a POST may
do; the services check the permission and the gate's state again, under its row lock."""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.selectors import suppression_feed_head
from console.access import console_view, staff_user
from console.gate_forms import GateForm
from gates import services
from gates.models import Gate, GateState
from gates.selectors import GateStatus, gate_evaluate, gate_history, gates_list
from gates.selectors import suppression_consumers as consumers_registered

VIEW = "gates.view_gate"


@dataclass(frozen=True)
class GateAction:
    label: str
    perm: str
    # Whether the button applies to the gate as it stands, for this viewer.
    applies: Callable[[GateStatus, User, bool], bool]
    run: Callable[[Gate, User, HttpRequest], str]
    style: str = ""
    asks_reason: bool = False
    asks_statement: bool = False


def _propose(gate: Gate, by: User, request: HttpRequest) -> str:
    services.gate_propose(gate=gate, by=by)
    return "Opening proposed: a second person with the permission must confirm it."


def _confirm(gate: Gate, by: User, request: HttpRequest) -> str:
    services.gate_open(gate=gate, by=by)
    return f"Opened: {gate.purpose.slug} in {gate.jurisdiction} is now {gate.opens_to}."


def _close(gate: Gate, by: User, request: HttpRequest) -> str:
    services.gate_close(gate=gate, by=by, reason=request.POST.get("reason", ""))
    return "Closed: the place is excluded again; the feed follows at once."


def _withdraw(gate: Gate, by: User, request: HttpRequest) -> str:
    services.gate_close(gate=gate, by=by, reason=request.POST.get("reason", ""))
    return "The proposed opening was withdrawn."


def _confirm_consumers(gate: Gate, by: User, request: HttpRequest) -> str:
    try:
        cursor = int(request.POST.get("cursor", ""))
    except ValueError:
        raise services.GateRefused("the cursor is a whole number") from None
    statement = request.POST.get("statement", "")
    services.consumer_confirmation_record(gate=gate, statement=statement, cursor=cursor, by=by)
    return f"Your confirmation up to cursor {cursor:,} is recorded and signed."


def _closed(status: GateStatus) -> bool:
    return status.gate.state == GateState.CLOSED


def _proposed(status: GateStatus) -> bool:
    return _closed(status) and status.gate.proposed_by_id is not None


ACTIONS: dict[str, GateAction] = {
    "propose": GateAction(
        "Propose opening",
        services.OPEN,
        lambda s, user, _c: _closed(s) and not _proposed(s) and s.met,
        _propose,
    ),
    "confirm": GateAction(
        "Confirm opening",
        services.OPEN,
        lambda s, user, _c: _proposed(s) and s.gate.proposed_by_id != user.pk and s.met,
        _confirm,
    ),
    "withdraw": GateAction(
        "Withdraw the proposal",
        services.CLOSE,
        lambda s, user, _c: _proposed(s),
        _withdraw,
        style="secondary",
        asks_reason=True,
    ),
    "close": GateAction(
        "Close the gate",
        services.CLOSE,
        lambda s, user, _c: s.gate.state == GateState.OPEN,
        _close,
        style="danger",
        asks_reason=True,
    ),
    "confirm_consumers": GateAction(
        "Record the confirmation",
        services.CONFIRM,
        lambda s, user, consumers: _closed(s) and not consumers,
        _confirm_consumers,
        style="secondary",
        asks_statement=True,
    ),
}


def gate_actions_allowed(
    *, status: GateStatus, user: User, consumers: bool
) -> list[tuple[str, GateAction]]:
    return [
        (name, action)
        for name, action in ACTIONS.items()
        if user.has_perm(action.perm) and action.applies(status, user, consumers)
    ]


@console_view(VIEW)
def gate_list(request: HttpRequest) -> HttpResponse:
    user = staff_user(request)
    context = {
        "title": "Processing gates",
        "gates": gates_list(),
        "may_define": user.has_perm(services.ADD),
    }
    return TemplateResponse(request, "console/gates/list.html", context)


@console_view(VIEW)
def gate_page(request: HttpRequest, pk: int) -> HttpResponse:
    gate = get_object_or_404(Gate.objects.select_related("purpose", "proposed_by"), pk=pk)
    user = staff_user(request)
    status = gate_evaluate(gate=gate)
    consumers = bool(consumers_registered())
    context = {
        "title": f"Gate: {gate}",
        "gate": gate,
        "status": status,
        "campaigns": list(gate.campaigns.order_by("pk")),
        "history": gate_history(gate=gate),
        "actions": gate_actions_allowed(status=status, user=user, consumers=consumers),
        "may_change": user.has_perm(services.CHANGE) and gate.state == GateState.CLOSED,
        "may_propose": user.has_perm(services.OPEN),
        "head": suppression_feed_head(purpose=gate.purpose),
    }
    return TemplateResponse(request, "console/gates/gate.html", context)


@console_view(VIEW, services.ADD)
def gate_new(request: HttpRequest) -> HttpResponse:
    form = GateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            gate = services.gate_define(
                purpose=form.cleaned_data["purpose"],
                jurisdiction=form.cleaned_data["jurisdiction"],
                terms=form.terms(),
                by=staff_user(request),
            )
        except services.GateRefused as refusal:
            form.add_error(None, f"Not done: {refusal}.")
        else:
            messages.success(
                request, "Gate defined; members there are told of its planned opening."
            )
            return HttpResponseRedirect(reverse("console:gate", args=[gate.pk]))
    context = {"title": "Define a processing gate", "form": form, "gate": None}
    return TemplateResponse(request, "console/gates/form.html", context)


@console_view(VIEW, services.CHANGE)
def gate_edit(request: HttpRequest, pk: int) -> HttpResponse:
    gate = get_object_or_404(Gate.objects.select_related("purpose"), pk=pk)
    form = GateForm(request.POST or None, gate=gate)
    if request.method == "POST" and form.is_valid():
        try:
            services.gate_change(gate=gate, terms=form.terms(), by=staff_user(request))
        except services.GateRefused as refusal:
            form.add_error(None, f"Not done: {refusal}.")
        else:
            messages.success(request, "Conditions changed; any proposed opening was withdrawn.")
            return HttpResponseRedirect(reverse("console:gate", args=[gate.pk]))
    context = {"title": f"Change the gate: {gate}", "form": form, "gate": gate}
    return TemplateResponse(request, "console/gates/form.html", context)


@require_POST
@console_view(VIEW)
def gate_act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Run one button's action; say what happened (or why not) and go back."""
    gate = get_object_or_404(Gate.objects.select_related("purpose"), pk=pk)
    chosen = ACTIONS.get(action)
    if chosen is None:
        return HttpResponse("Unknown action", status=404, content_type="text/plain")
    try:
        messages.success(request, chosen.run(gate, staff_user(request), request))
    except (services.GateRefused, PermissionDenied) as refusal:
        messages.error(request, f"Not done: {refusal}.")
    return HttpResponseRedirect(reverse("console:gate", args=[gate.pk]))
