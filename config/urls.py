from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from api.v1 import api as api_v1
from campaigns.webhooks import tracking_urlpatterns
from config.outbox import outbox_list, outbox_message
from config.views import healthz
from console.views import signin
from gates.api import router as gates_router

# The gates sit above the API in the layers (they read its consumers' positions), so
# their router is mounted here, before the API's URLs are made.
api_v1.add_router("/gates", gates_router)

admin.site.site_header = "Renotify"
admin.site.site_title = "Renotify"
admin.site.index_title = "Privacy notices, consent and opt-outs"

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("", include("pages.urls")),
    path("admin/outbox/", outbox_list, name="outbox_list"),
    path("admin/outbox/<str:name>", outbox_message, name="outbox_message"),
    # The admin's login page is the console's sign-in (its form posts there): one
    # sign-in, with its second step, wherever staff start.
    path("admin/login/", signin.login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
    path("api/v1/", api_v1.urls),
    # ESP tracking webhooks: /anymail/<esp>/tracking/ (e.g. /anymail/postmark/tracking/)
    path("anymail/", include(tracking_urlpatterns())),
]
