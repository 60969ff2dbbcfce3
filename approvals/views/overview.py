from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals.views import stats
from console.roles import Role, role_required


@require_GET
@role_required(Role.OPERATOR)
def overview(request):
    """Every queue's depth, SLA attainment, time to decision, breaches and reviewer load."""
    return render(request, "approvals/overview.html", stats.overview())
