import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

from config.checks import refuse_to_start_on_errors  # noqa: E402  (needs the app loaded)

refuse_to_start_on_errors()
