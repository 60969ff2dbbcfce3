"""What the approvals UI adds to the shell: nav links and the dashboard tile."""


def register_ui() -> None:
    from approvals.views import stats
    from console import dashboard, navigation
    from console.roles import Role

    navigation.register("My queue", "approvals:my_queue", Role.REVIEWER, order=20)
    navigation.register("Approvals", "approvals:overview", Role.OPERATOR, order=21)
    navigation.register("Policies", "approvals:policies", Role.ADMIN, order=80)
    dashboard.register_tile("approvals/partials/tile_approvals.html", stats.tile_context, order=10)
