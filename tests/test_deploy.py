"""The deployment examples under deploy/ agree with the settings: every queue has a
consumer, no example names a queue nobody routes to, and every routed or scheduled task
exists (a renamed task would silently fall back to the default queue, or never run)."""

import re
import shlex
from pathlib import Path

from celery import current_app
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
QUEUES = {queue.name for queue in settings.CELERY_TASK_QUEUES}


def procfile_commands() -> dict[str, list[str]]:
    commands = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name] = shlex.split(command)
    return commands


def consumed_queues(argv: list[str]) -> set[str]:
    if "worker" not in argv:
        return set()
    if "-Q" not in argv:
        return set(QUEUES)  # a worker without -Q consumes every queue in CELERY_TASK_QUEUES
    return set(argv[argv.index("-Q") + 1].split(","))


def test_every_queue_has_a_worker_in_the_procfile_and_no_worker_names_an_unknown_one():
    consumed = [consumed_queues(argv) for argv in procfile_commands().values()]
    assert set().union(*consumed) == QUEUES
    assert all(queues <= QUEUES for queues in consumed)


def test_the_systemd_worker_unit_is_enabled_once_per_queue_the_settings_define():
    unit = (DEPLOY / "systemd" / "renotify-worker@.service").read_text()
    assert "-Q %i" in unit
    enabled = set(re.findall(r"renotify-worker@(\w+)", unit))
    assert enabled == QUEUES


def test_the_bulk_queue_takes_the_sender_chain_and_the_default_queue_the_event_processor():
    router = current_app.amqp.router
    assert router.route({}, "campaigns.tasks.campaign_send")["queue"].name == "bulk"
    assert router.route({}, "campaigns.tasks.delivery_events_process")["queue"].name == "celery"
    assert router.route({}, "campaigns.tasks.objection_receipts_send_task")["queue"].name == (
        "celery"
    )


def test_every_routed_and_every_scheduled_task_exists():
    current_app.loader.import_default_modules()
    routed = set(settings.CELERY_TASK_ROUTES)
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert (routed | scheduled) - set(current_app.tasks) == set()


def test_the_units_run_the_processes_the_procfile_runs():
    units = {path.stem: path.read_text() for path in (DEPLOY / "systemd").glob("*.service")}
    assert "gunicorn -c config/gunicorn.py config.wsgi" in units["renotify-web"]
    assert "celery -A config beat" in units["renotify-beat"]
    assert (ROOT / "config" / "gunicorn.py").exists()
    for unit in units.values():
        assert "EnvironmentFile=/etc/renotify/renotify.env" in unit
