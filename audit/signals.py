"""Sign-ins and role changes, which happen in Django's own code rather than in one of
our services: recorded from Django's signals.

- ``user_logged_in`` / ``user_logged_out`` / ``user_login_failed``: a failed sign-in
  keeps the username as typed (``by`` is that user if one has that name, else None);
  Django hands us credentials with the password already masked, and we keep none of it.
- Role changes: a user's groups or permissions (``m2m_changed``, either side of the
  relation) and the is_staff / is_superuser / is_active flags (the user's save). ``by``
  is the staff member of the current request; without a request it is the system and
  ``detail`` names the command.
"""

from typing import Any

from django.contrib.auth import user_logged_in, user_logged_out, user_login_failed
from django.contrib.auth.models import Group, Permission, User
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from audit.middleware import current_request
from audit.models import Action
from audit.services import staff_action_record, system_detail

ROLE_FLAGS = ("is_staff", "is_superuser", "is_active")


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    staff_action_record(by=user, action=Action.LOGIN)


@receiver(user_logged_out, dispatch_uid="audit_logout")
def _logged_out(sender, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    if user is not None:  # signing out when not signed in is no act of anyone's
        staff_action_record(by=user, action=Action.LOGOUT)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender, credentials: dict[str, Any], request=None, **kwargs: Any) -> None:
    typed = str(credentials.get(User.USERNAME_FIELD) or "")[:150]
    user = User.objects.filter(username=typed).first() if typed else None
    staff_action_record(by=user, action=Action.LOGIN_FAILED, username=typed)


def _actor() -> tuple[User | None, dict[str, str]]:
    """Who is changing roles: the request's staff member, or the system."""
    request = current_request()
    user = getattr(request, "user", None)
    if isinstance(user, User) and user.is_authenticated:
        return user, {}
    return None, system_detail()


@receiver(pre_save, sender=User, dispatch_uid="audit_role_flags_before")
def _flags_before(sender, instance: User, update_fields=None, **kwargs: Any) -> None:
    # A save of the last sign-in time (every login) or the password touches no flag.
    if instance.pk is None or (update_fields and not set(update_fields) & set(ROLE_FLAGS)):
        return
    before = User.objects.filter(pk=instance.pk).values(*ROLE_FLAGS).first()
    if before is not None:
        changed = {f: (before[f], getattr(instance, f)) for f in ROLE_FLAGS}
        instance._audit_flags = {f: v for f, v in changed.items() if v[0] != v[1]}  # type: ignore[attr-defined]


@receiver(post_save, sender=User, dispatch_uid="audit_role_flags_after")
def _flags_after(sender, instance: User, created: bool, **kwargs: Any) -> None:
    if created:
        changes = {f: (None, getattr(instance, f)) for f in ("is_staff", "is_superuser")}
        if not (instance.is_staff or instance.is_superuser):
            return  # a member of nothing yet: their first role is recorded when given
    else:
        changes = getattr(instance, "_audit_flags", {})
        instance._audit_flags = {}  # type: ignore[attr-defined]
    if changes:
        by, detail = _actor()
        staff_action_record(
            by=by, action=Action.ROLE_CHANGE, target=instance, changes=changes, detail=detail
        )


# (relation, owner, field on the owner, the owner's name on the other side, what it holds)
ROLE_RELATIONS = [
    (User.groups.through, User, "groups", "user_set", Group),
    (User.user_permissions.through, User, "user_permissions", "user_set", Permission),
    # What a role (group) allows is a role change for everyone in it.
    (Group.permissions.through, Group, "permissions", "group_set", Permission),
]


def _m2m_receiver(owner, field: str, back: str, model):
    def receive(sender, instance, action: str, reverse: bool, pk_set, **kwargs: Any) -> None:
        """Record each owner's names in ``field`` before and after. A clear is taken
        before the rows go (nothing says afterwards what they were)."""
        if action not in ("post_add", "post_remove", "pre_clear"):
            return
        if not reverse:
            _record_m2m(instance, action, pk_set, field=field, model=model)
            return
        # group.user_set.add(...): ``instance`` is the other side, pk_set the owners.
        owners = (
            getattr(instance, back).all()
            if action == "pre_clear"
            else owner.objects.filter(pk__in=pk_set)
        )
        removing = "post_remove" if action == "pre_clear" else action
        for one in list(owners):
            done = removing == action
            _record_m2m(one, removing, {instance.pk}, field=field, model=model, done=done)

    return receive


for _through, _owner, _field, _back, _model in ROLE_RELATIONS:
    m2m_changed.connect(
        _m2m_receiver(_owner, _field, _back, _model),
        sender=_through,
        weak=False,
        dispatch_uid=f"audit_{_owner.__name__}_{_field}",
    )


def _record_m2m(owner, action: str, pk_set, *, field: str, model, done: bool = True) -> None:
    """``done``: the change is in the database already (post_*), else about to be."""
    current = _names(getattr(owner, field).all(), model)
    if action == "pre_clear":
        before, after = current, set()
    else:
        moved = _names(model.objects.filter(pk__in=pk_set or ()), model)
        if action == "post_add":
            before, after = current - moved, current
        elif done:
            before, after = current | moved, current
        else:
            before, after = current, current - moved
    if before == after:
        return
    by, detail = _actor()
    staff_action_record(
        by=by,
        action=Action.ROLE_CHANGE,
        target=owner,
        changes={field: (sorted(before), sorted(after))},
        detail=detail,
    )


def _names(queryset, model) -> set[str]:
    """Groups by name, permissions as "app_label.codename" (as has_perm names them)."""
    if model is Group:
        return set(queryset.values_list("name", flat=True))
    return {
        f"{app}.{codename}"
        for app, codename in queryset.values_list("content_type__app_label", "codename")
    }
