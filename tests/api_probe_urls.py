"""The site's URLs plus a probe API under ``/api/probe/``: endpoints with a JSON body and
one that fails, built on the same ``RenotifyAPI`` as ``/api/v1/``, so that the edge's
answers to bodies and crashes are tested whatever endpoints v1 has today."""

from django.urls import path
from ninja import Schema

from api.auth import ApiKey
from api.base import RenotifyAPI
from config.urls import urlpatterns as site_urlpatterns

probe = RenotifyAPI(title="probe", version="0", urls_namespace="api-probe", auth=ApiKey())


class Note(Schema):
    text: str
    count: int


class NoteOut(Schema):
    text: str
    count: int


# Calls that reached the endpoint (a refused request must not get here).
REACHED: list[str] = []


@probe.post("/notes", response=NoteOut)
def note_create(request, note: Note):
    REACHED.append(note.text)
    return note


@probe.get("/crash")
def crash(request):
    raise RuntimeError("secret internals: /n/abc123 database password")


urlpatterns = [path("api/probe/", probe.urls), *site_urlpatterns]
