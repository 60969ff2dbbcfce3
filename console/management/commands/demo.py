"""``python manage.py demo``: migrate, create demo users and agents, serve the console.

Embedded mode needs nothing but Python: SQLite, in-memory channel layer and the
in-process scheduler. Each seeding step is idempotent, so running it twice is fine.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from console.roles import Role, ensure_role_groups, grant_role

DEMO_USERS = [
    ("reviewer", "reviewer-demo-pass", Role.REVIEWER),
    ("reviewer2", "reviewer2-demo-pass", Role.REVIEWER),  # the second pair of eyes
    ("operator", "operator-demo-pass", Role.OPERATOR),
    ("admin", "admin-demo-pass", Role.ADMIN),
]

# Each app adds a seeding function here: seed(stdout) -> None, idempotent.
SEEDERS = [
    "agents.demo.seed",
    "agents.prompt_demo.seed",
    "approvals.demo.seed",
    "approvals.conflict_demo.seed",
    "traces.watchers.demo.seed",
]


class Command(BaseCommand):
    help = "Set up demo users and data, then serve the console (HTTP + WebSocket) on one port."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-serve", action="store_true", help="set up, then exit")
        parser.add_argument("--no-fleet", action="store_true", help="do not start the demo agents")

    def handle(self, *args, host, port, no_serve, no_fleet, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready.")
        self._create_users()
        for path in SEEDERS:
            import_string(path)(self.stdout)
        if no_serve:
            return
        os.environ["CONSOLE_DEMO_FLEET"] = "0" if no_fleet else "1"
        url = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nAgent Ops Console at {url}  (Ctrl-C stops it)\n"))
        call_command("serve", host=host, port=port, fleet=not no_fleet)

    def _create_users(self):
        ensure_role_groups()
        User = get_user_model()
        self.stdout.write("Demo logins (username / password / role):")
        for username, password, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.email = f"{username}@example.test"
                user.save()
            grant_role(user, role)
            self.stdout.write(f"  {username:9} / {password:20} / {role}")
