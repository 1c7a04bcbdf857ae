import os

from django.core.wsgi import get_wsgi_application

from config.chunked import chunked_bodies_read

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = chunked_bodies_read(get_wsgi_application())

from config.checks import refuse_to_start_on_errors  # noqa: E402  (needs the app loaded)

refuse_to_start_on_errors()
