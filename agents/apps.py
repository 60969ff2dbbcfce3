from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from console import live, navigation
        from console.roles import STAFF_ROLES

        navigation.register("Agents", "agents:list", *STAFF_ROLES, order=40)
        navigation.register("Prompts", "prompts:list", *STAFF_ROLES, order=45)
        live.register_topic("agent", live.any_role)  # agents.live.push_agent_status_on_commit
