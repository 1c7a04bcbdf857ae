from django.urls import path

from campaigns import tokens
from pages import views

# The prefixes are part of the token format that campaigns.tokens builds links with.
urlpatterns = [
    path(f"{tokens.NOTICE_PATH.strip('/')}/<str:token>/", views.notice_page, name="notice_page"),
    path(
        f"{tokens.UNSUBSCRIBE_PATH.strip('/')}/<str:token>/",
        views.unsubscribe_page,
        name="unsubscribe_page",
    ),
    path(
        f"{tokens.PREFERENCES_PATH.strip('/')}/<str:token>/",
        views.preferences_page,
        name="preferences_page",
    ),
]
