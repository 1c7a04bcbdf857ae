"""Request bodies sent with ``Transfer-Encoding: chunked`` and no ``Content-Length``.

Django reads ``CONTENT_LENGTH`` bytes of a body, so a chunked one reads as empty:
an ESP's event was answered 200 and stored as an empty payload. A server that
decodes the chunks and marks the input as terminated (gunicorn sets
``wsgi.input_terminated``) lets us read it to the end here, up to Django's own
body limit; any other server gets 411, so the sender retries with a length. Under
``/api/`` the refusal is a problem details document, as every API error is.
"""

import io
import json
from collections.abc import Callable, Iterable

from django.conf import settings

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
# The API's paths and error media type (api.middleware, api.problems; not imported: the
# WSGI wrapper runs before Django's apps and sits below them).
API_PREFIX, PROBLEM = "/api/", "application/problem+json"


def chunked_bodies_read(app: WSGIApp) -> WSGIApp:
    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not _chunked_without_length(environ):
            return app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return _refuse(environ, start_response, "411 Length Required", "send a Content-Length")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = (
            environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
        )
        if limit is not None and len(body) > limit:
            return _refuse(environ, start_response, "413 Content Too Large", "body too large")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application


def _chunked_without_length(environ: dict) -> bool:
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encoding and not environ.get("CONTENT_LENGTH")


def _refuse(environ: dict, start_response: Callable, status: str, detail: str) -> list[bytes]:
    if environ.get("PATH_INFO", "").startswith(API_PREFIX):
        code, title = status.split(" ", 1)
        problem = {"type": "about:blank", "title": title, "status": int(code), "detail": detail}
        content_type, text = PROBLEM, json.dumps(problem).encode()
    else:
        content_type, text = "text/plain", f"{detail}\n".encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(text)))])
    return [text]
