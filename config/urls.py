from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from config.views import healthz

admin.site.site_header = "Renotify"
admin.site.site_title = "Renotify"
admin.site.index_title = "Privacy notices, consent and opt-outs"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
