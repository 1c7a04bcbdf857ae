from django.http import HttpRequest, JsonResponse

from db.health import database_answers


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the process answers and the database does too."""
    database_answers()
    return JsonResponse({"status": "ok"})
