"""Roles are Django groups; every view and API names the roles it admits.

Admin passes every role check. A user with no role may log in but sees
nothing but a page that says so.
"""

from functools import wraps

from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import models


class Role(models.TextChoices):
    REVIEWER = "Reviewer", "Reviewer"
    OPERATOR = "Operator", "Operator"
    ADMIN = "Admin", "Admin"


STAFF_ROLES = (Role.REVIEWER, Role.OPERATOR)  # everyone who may look at operations


def ensure_role_groups() -> None:
    """Create the three role groups; idempotent."""
    for role in Role:
        Group.objects.get_or_create(name=role.value)


def roles_of(user) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_console_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(Role.values)
        else:
            names = set(user.groups.values_list("name", flat=True))
            cached = frozenset(name for name in Role.values if name in names)
        user._console_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    held = roles_of(user)
    return Role.ADMIN in held or any(role in held for role in roles)


def role_required(*roles: str):
    """Admit logged-in users holding one of ``roles`` (Admin always); 403 otherwise."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        wrapped.required_roles = roles
        return wrapped

    return decorator


def grant_role(user, role: str) -> None:
    ensure_role_groups()
    user.groups.add(Group.objects.get(name=role))
    if hasattr(user, "_console_roles"):
        del user._console_roles
