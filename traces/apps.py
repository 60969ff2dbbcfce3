from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _invalidate_prices(**kwargs):
    from traces import pricing

    pricing.invalidate_cache()


def _invalidate_rules(**kwargs):
    from traces import redaction

    redaction.invalidate_cache()


class TracesConfig(AppConfig):
    name = "traces"
    verbose_name = "Traces"

    def ready(self):
        from console import live
        from traces.models import ModelPrice, RedactionRule

        # run-<id>: one run's timeline; runs: the runs list. Staff roles (Admin passes too).
        live.register_topic("run", live.any_role)
        live.register_topic("runs", live.any_role)
        from traces import watchers  # incidents: live topics, nav links, dashboard tile (traces/watchers)
        watchers.ready()
        # This process sees its own edits at once; other processes within the caches' few seconds.
        for model, handler in ((ModelPrice, _invalidate_prices), (RedactionRule, _invalidate_rules)):
            post_save.connect(handler, sender=model, dispatch_uid=f"traces-{model.__name__}-saved")
            post_delete.connect(handler, sender=model, dispatch_uid=f"traces-{model.__name__}-deleted")
        _register_ui()


def _register_ui():
    from console import dashboard, navigation
    from console.roles import STAFF_ROLES
    from traces.views import tile

    navigation.register("Runs", "traces-runs", *STAFF_ROLES, order=30)
    dashboard.register_tile("traces/partials/tile_runs.html", tile.tile_context, order=20)
