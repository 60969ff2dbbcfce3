from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self):
        from approvals import live

        live.register_topics()
        from approvals.views import nav
        nav.register_ui()
