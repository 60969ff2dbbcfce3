from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import views
from agents.api import router as agents_router
from approvals.api import router as approvals_router
from console.api import api
from traces.api import router as traces_router

api.add_router("/", agents_router)
api.add_router("/", traces_router)
api.add_router("/", approvals_router)

handler403 = "console.views.permission_denied"
handler404 = "console.views.not_found"
handler500 = "console.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("audit/", views.audit_log, name="audit"),
    path("metrics", views.metrics, name="metrics"),
    path("agents/", include("agents.urls")),
    path("prompts/", include("agents.prompt_urls")),
    path("", include("traces.urls")),
    path("", include("approvals.urls")),
    path("api/v1/", api.urls),
    # Django's admin login form has no rate limit: the console's login (rate-limited) is the only one.
    path("django-admin/login/", views.admin_login, name="admin-login"),
    path("django-admin/", admin.site.urls),
]
