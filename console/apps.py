from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self):
        from console import live, metrics, metrics_sources, navigation
        from console.roles import Role

        for source in metrics_sources.SOURCES:
            metrics.register_db_gauges(source)
        live.register_topic("dashboard", live.any_role)
        navigation.register("Audit log", "audit", Role.ADMIN, order=90)
