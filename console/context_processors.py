from django.conf import settings

from console import navigation
from console.roles import Role, roles_of


def console(request):
    roles = roles_of(getattr(request, "user", None))
    return {
        "user_roles": roles,
        "is_admin": Role.ADMIN in roles,
        "is_operator": bool(roles & {Role.OPERATOR, Role.ADMIN}),
        "is_reviewer": bool(roles & {Role.REVIEWER, Role.ADMIN}),
        "console_nav": navigation.items_for(request.user) if roles else [],
        "console_mode": "embedded" if settings.EMBEDDED else "production",
        "server_timezone": settings.TIME_ZONE,
    }
