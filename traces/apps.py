from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "traces"
    verbose_name = "Traces"

    def ready(self):
        from console import live

        # run-<id>: one run's timeline; runs: the runs list. Staff roles (Admin passes too).
        live.register_topic("run", live.any_role)
        live.register_topic("runs", live.any_role)
