"""The runs list: filters, keyset pages, live rows (pushed by traces.live)."""

from django.shortcuts import render
from django.utils import timezone

from console.pagination import keyset_page
from console.roles import STAFF_ROLES, role_required
from traces.models import Run
from traces.views.filters import RunFilterForm

PAGE_SIZE = 50


@role_required(*STAFF_ROLES)
def runs_list(request):
    form = RunFilterForm(request.GET or None)
    filtering = form.is_filtering()
    runs = Run.objects.select_related("agent").order_by("-id")
    if form.is_bound:
        runs = form.apply(runs, now=timezone.now())
    page = keyset_page(runs, request, size=PAGE_SIZE)
    context = {"form": form, "filtering": filtering, "page": page, "runs": page.items}
    if request.htmx and request.GET.get("cursor"):
        return render(request, "traces/runs.html#more-rows", context)
    return render(request, "traces/runs.html", context)
