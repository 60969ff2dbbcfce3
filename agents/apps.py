from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from console import navigation
        from console.roles import STAFF_ROLES

        navigation.register("Agents", "agents:list", *STAFF_ROLES, order=40)
        navigation.register("Prompts", "prompts:list", *STAFF_ROLES, order=45)
