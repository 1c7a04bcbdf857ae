"""``manage.py gate_status [--purpose SLUG] [--jurisdiction J] [--json]``: the state of
the processing gates and each condition with its figure, for people and pipelines.

Exit status: 0 when every gate asked about is open, 1 while any is closed, 2 for a
purpose or jurisdiction that does not exist or has no gate. A training job runs
``manage.py gate_status --purpose ai-training --jurisdiction UK || exit 1``.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.jurisdictions import Jurisdiction
from gates.models import GateState
from gates.selectors import GateStatus, gate_evaluate, gates_list

CLOSED_EXIT, MISSING_EXIT = 1, 2


class Command(BaseCommand):
    help = "Show processing gates and their conditions; exit 1 while an asked gate is closed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--purpose", help="the purpose's slug (default: every purpose)")
        parser.add_argument(
            "--jurisdiction",
            choices=Jurisdiction.values,
            help="the jurisdiction (default: every jurisdiction with a gate)",
        )
        parser.add_argument("--json", action="store_true", help="one JSON document")

    def handle(self, *args, **options) -> None:
        purpose, jurisdiction = options["purpose"], options["jurisdiction"]
        gates = [
            gate
            for gate in gates_list()
            if purpose in (None, gate.purpose.slug) and jurisdiction in (None, gate.jurisdiction)
        ]
        if not gates:
            asked = " in ".join(filter(None, [purpose, jurisdiction])) or "anything"
            raise CommandError(f"no processing gate for {asked}", returncode=MISSING_EXIT)
        statuses = [gate_evaluate(gate=gate) for gate in gates]
        self.stdout.write(_as_json(statuses) if options["json"] else _as_text(statuses))
        if any(s.gate.state != GateState.OPEN for s in statuses):
            sys.exit(CLOSED_EXIT)


def _as_json(statuses: list[GateStatus]) -> str:
    return json.dumps({"gates": [s.as_dict() for s in statuses]}, indent=2)


def _as_text(statuses: list[GateStatus]) -> str:
    lines = []
    for status in statuses:
        gate = status.gate
        lines.append(
            f"{gate.purpose.slug} in {gate.jurisdiction}: {gate.state.upper()}"
            f" (opens to {gate.opens_to}, planned {gate.planned_opening:%Y-%m-%d}"
            + (f", proposed by {gate.proposed_by}" if gate.proposed_by else "")
            + ")"
        )
        for c in status.conditions:
            lines.append(f"  [{'met' if c.met else 'UNMET'}] {c.label}: {c.figure}")
    return "\n".join(lines)
