"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path

from console.views import campaign_actions, campaigns, dashboard

app_name = "console"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("campaigns/", campaigns.campaign_list, name="campaigns"),
    path("campaigns/<int:pk>/", campaigns.campaign_page, name="campaign"),
    path("campaigns/<int:pk>/progress/", campaigns.campaign_progress, name="campaign_progress"),
    path(
        "campaigns/<int:pk>/act/<slug:action>/",
        campaign_actions.campaign_act,
        name="campaign_act",
    ),
]
