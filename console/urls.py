"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path

from console.views import audit, campaign_actions

app_name = "console"

urlpatterns = [
    path(
        "campaigns/<int:pk>/act/<slug:action>/",
        campaign_actions.campaign_act,
        name="campaign_act",
    ),
    path("audit/", audit.audit_trail, name="audit"),
    path("audit/download.csv", audit.audit_download, name="audit_download"),
]
