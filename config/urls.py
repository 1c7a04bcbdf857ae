from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from config.outbox import outbox_list, outbox_message
from config.views import healthz

admin.site.site_header = "Renotify"
admin.site.site_title = "Renotify"
admin.site.index_title = "Privacy notices, consent and opt-outs"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/outbox/", outbox_list, name="outbox_list"),
    path("admin/outbox/<str:name>", outbox_message, name="outbox_message"),
    path("admin/", admin.site.urls),
]
