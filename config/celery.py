import os

from celery import Celery, signals
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("renotify")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(getattr(settings, "REDBEAT_SETTINGS", {}))
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _refuse_insecure_process(**kwargs) -> None:
    """Stop a worker or beat before it consumes or schedules anything when a production
    check fails. Celery logs and swallows exceptions raised by signal receivers (the
    process would go on, signing links and hashing the ledger with the wrong keys), but
    not SystemExit, which ends the process with status 1."""
    from django.core.exceptions import ImproperlyConfigured

    from config.checks import refuse_to_start_on_errors

    try:
        refuse_to_start_on_errors()
    except ImproperlyConfigured as error:
        raise SystemExit(f"renotify: refusing to start: {error}") from error
