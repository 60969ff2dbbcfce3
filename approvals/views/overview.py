from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals.views import stats
from console.roles import Role, role_required


@require_GET
@role_required(Role.OPERATOR)
def overview(request):
    """Every queue's depth, SLA attainment, time to decision, breaches and reviewer load."""
    template = "approvals/overview.html#body" if request.htmx else "approvals/overview.html"
    return render(request, template, stats.overview())
