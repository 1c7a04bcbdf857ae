"""The staff console under /console/ (``config.urls``); URL names are ``console:<name>``."""

from django.urls import path  # noqa: F401

app_name = "console"

urlpatterns: list = []
