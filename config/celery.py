import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("renotify")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _refuse_insecure_worker(**kwargs) -> None:
    from config.checks import refuse_to_start_on_errors

    refuse_to_start_on_errors()
