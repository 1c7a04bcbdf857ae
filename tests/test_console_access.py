"""Every console page is guarded (``console.access.console_view``) and its menu entries
resolve: a new page without a permission fails here."""

from django.urls import URLPattern, URLResolver, reverse

from console import urls as console_urls
from console.nav import NAV


def _patterns(patterns) -> list[URLPattern]:
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found += _patterns(entry.url_patterns)
        else:
            found.append(entry)
    return found


def test_every_console_view_names_the_permissions_it_needs():
    unguarded = [
        p.name
        for p in _patterns(console_urls.urlpatterns)
        if not hasattr(p.callback, "console_perms")
        and not getattr(p.callback, "console_public", False)
    ]
    assert unguarded == []


def test_every_menu_entry_is_a_console_page():
    for _label, name, perm in NAV:
        assert reverse(name).startswith("/console/")
        assert "." in perm
