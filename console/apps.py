from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self):
        from console import live, navigation
        from console.roles import Role

        live.register_topic("dashboard", live.any_role)
        navigation.register("Audit log", "audit", Role.ADMIN, order=90)
