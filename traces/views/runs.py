"""The runs list: filters, keyset pages, live rows (pushed by traces.live)."""

from django.shortcuts import render
from django.utils import timezone

from console.pagination import keyset_page
from console.roles import STAFF_ROLES, role_required
from traces import search
from traces.models import Run
from traces.views.filters import RunFilterForm

PAGE_SIZE = 50


@role_required(*STAFF_ROLES)
def runs_list(request):
    form = RunFilterForm(request.GET or None)
    filtering = form.is_filtering()
    runs = all_runs = Run.objects.select_related("agent").order_by("-id")
    now = timezone.now()
    if form.is_bound:
        runs = form.apply(runs, now=now)
    searching = form.is_bound and "q" not in form.errors and bool(form.cleaned_data.get("q"))
    try:
        with search.bounded_search(searching):
            page = keyset_page(runs, request, size=PAGE_SIZE)
    except search.SearchTimedOut as exc:
        form.add_error("q", str(exc))  # the list is shown without the search, the box says why
        # the next page must not search again either (it would time out the same way)
        page = keyset_page(form.apply(all_runs, now=now), request, size=PAGE_SIZE, drop=("q",))
    context = {"form": form, "filtering": filtering, "page": page, "runs": page.items,
               "first_page": not request.GET.get("cursor")}  # only the first page takes new runs on top
    if request.htmx and request.GET.get("cursor"):
        return render(request, "traces/runs.html#more-rows", context)
    return render(request, "traces/runs.html", context)
