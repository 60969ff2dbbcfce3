import json
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from console import health
from console.models import LoginAttempt
from console.roles import STAFF_ROLES, has_role

LOGIN_WINDOW = timedelta(minutes=15)


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")[:64]


class LoginView(auth_views.LoginView):
    """Django's login, refusing after too many recent failures for a name+address."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def _too_many(self, username: str) -> bool:
        since = timezone.now() - LOGIN_WINDOW
        failures = LoginAttempt.objects.filter(
            username=username[:150], address=_client_address(self.request), at__gte=since
        ).count()
        return failures >= settings.LOGIN_RATE_LIMIT

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if self._too_many(username):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, "Too many failed attempts. Wait 15 minutes and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        LoginAttempt.objects.create(
            at=timezone.now(), username=self.request.POST.get("username", "")[:150],
            address=_client_address(self.request),
        )
        return super().form_invalid(form)


def admin_login(request):
    """Django's admin login, replaced: everyone signs in through the rate-limited console login."""
    from django.contrib.auth.views import redirect_to_login
    from django.shortcuts import redirect
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.GET.get("next") or "/django-admin/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/django-admin/"
    if not request.user.is_authenticated:
        return redirect_to_login(target)
    if not (request.user.is_active and request.user.is_staff):
        raise PermissionDenied("The Django admin is for staff accounts only.")
    return redirect(target)


@login_required
def home(request):
    if not has_role(request.user, *STAFF_ROLES):
        return render(request, "console/no_role.html", status=403)
    from console import dashboard

    return render(request, "console/home.html", dashboard.context_for(request))


@never_cache
@require_GET
def healthz(request):
    report = health.check_all()
    status = 200 if report["ok"] else 503
    return JsonResponse(report, status=status)


def permission_denied(request, exception=None):
    message = str(exception) if exception and str(exception) else "You do not have access to this page."
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"detail": message}, status=403)
    return render(request, "403.html", {"message": message}, status=403)


def not_found(request, exception=None):
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    if request.path.startswith(("/api/", "/v1/")):
        return HttpResponse(json.dumps({"detail": "Internal error."}), status=500,
                            content_type="application/json")
    return render(request, "500.html", status=500)


def require_admin(user):
    from console.roles import Role

    if not has_role(user, Role.ADMIN):
        raise PermissionDenied("Only Admins may do this.")


@login_required
def audit_log(request):
    from console.models import AuditEntry
    from console.pagination import keyset_page
    from console.roles import Role

    if not has_role(request.user, Role.ADMIN):
        raise PermissionDenied("Only Admins may read the audit log.")
    entries = AuditEntry.objects.all()
    action = request.GET.get("action", "").strip()
    if action:
        entries = entries.filter(action__startswith=action)
    page = keyset_page(entries.order_by("-id"), request, key="id", descending=True, size=50)
    template = "console/audit.html#rows" if request.htmx else "console/audit.html"
    return render(request, template, {"page": page, "action": action})


@never_cache
@require_GET
def metrics(request):
    """Prometheus text format; bearer-protected when METRICS_BEARER_TOKEN is set."""
    import hmac

    from console import metrics as console_metrics

    token = settings.METRICS_BEARER_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            response = HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = "Bearer"
            return response
    body, content_type = console_metrics.render()
    return HttpResponse(body, content_type=content_type)
