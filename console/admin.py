"""django-otp's own device admins are taken off the admin: they show each device's QR
code (its secret) to whoever may view devices, and would let someone confirm a device
for a colleague. Staff set up their own second factor in the console; a lost one is
removed with ``manage.py staff_two_factor_reset <username>``."""

from django.contrib import admin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

for model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
