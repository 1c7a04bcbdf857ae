"""Chunked request bodies reach Django whole, or are refused so the sender retries."""

import io

from config.chunked import chunked_bodies_read

BODY = b'{"RecordType": "Delivery"}'


def call(environ: dict) -> tuple[str, bytes, bytes]:
    seen: dict[str, bytes] = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [])
        return [b"ok"]

    status: list[str] = []
    result = chunked_bodies_read(app)(environ, lambda s, headers: status.append(s))
    return status[0], b"".join(result), seen.get("body", b"")


def environ(**extra) -> dict:
    return {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(BODY), **extra}


def test_a_chunked_body_from_a_server_that_ends_the_input_is_read_whole():
    status, _, body = call(
        environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    )
    assert (status, body) == ("200 OK", BODY)


def test_a_chunked_body_the_server_cannot_end_is_refused_with_411():
    status, answer, body = call(environ(HTTP_TRANSFER_ENCODING="chunked"))
    assert answer == b"send a Content-Length\n"
    assert status == "411 Length Required" and body == b""


def test_a_chunked_body_over_the_upload_limit_is_refused_with_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    status, _, body = call(
        environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    )
    assert status == "413 Content Too Large" and body == b""


def test_a_body_with_a_length_is_left_alone():
    status, _, body = call(environ(CONTENT_LENGTH=str(len(BODY))))
    assert (status, body) == ("200 OK", BODY)


def test_under_the_api_a_refusal_is_a_problem_document(settings):
    import json

    status, answer, _ = call(environ(HTTP_TRANSFER_ENCODING="chunked", PATH_INFO="/api/v1/x"))
    assert status == "411 Length Required"
    assert json.loads(answer) == {
        "type": "about:blank",
        "title": "Length Required",
        "status": 411,
        "detail": "send a Content-Length",
    }
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    status, answer, _ = call(
        environ(
            HTTP_TRANSFER_ENCODING="chunked",
            PATH_INFO="/api/v1/x",
            **{"wsgi.input_terminated": True},
        )
    )
    assert status == "413 Content Too Large" and json.loads(answer)["status"] == 413
