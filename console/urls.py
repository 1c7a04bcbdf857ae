"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path

from console.views import campaign_actions

app_name = "console"

urlpatterns = [
    path(
        "campaigns/<int:pk>/act/<slug:action>/",
        campaign_actions.campaign_act,
        name="campaign_act",
    ),
]
