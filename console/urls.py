"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path

from console.views import campaign_actions, signin, two_factor

app_name = "console"

urlpatterns = [
    path("login/", signin.login, name="login"),
    path("login/verify/", signin.login_verify, name="login_verify"),
    path("logout/", signin.logout, name="logout"),
    path("account/two-factor/", two_factor.two_factor, name="two_factor"),
    path(
        "campaigns/<int:pk>/act/<slug:action>/",
        campaign_actions.campaign_act,
        name="campaign_act",
    ),
]
