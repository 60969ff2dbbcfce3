"""``{% conflict_panel_data req user as cp %}``: what the conflict panel shows (see views/conflicts.py)."""

from django import template

register = template.Library()


@register.simple_tag
def conflict_panel_data(req, user):
    from approvals.views.conflicts import panel_context

    return panel_context(user, req)
