from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.models import Agent


class Command(BaseCommand):
    help = "Issue an API key for AGENT (created if missing) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("agent")
        parser.add_argument("--name", default="", help="a label for the key")
        parser.add_argument("--no-create", action="store_true", help="fail if the agent does not exist")

    def handle(self, *args, agent, name, no_create, **options):
        actor = "system:create_agent_key"
        found = Agent.objects.filter(name__iexact=agent).first()
        if found is None:
            if no_create:
                raise CommandError(f"No agent named {agent!r}.")
            found = services.create_agent(name=agent, actor=actor)
        key, plain = services.issue_key(agent=found, actor=actor, name=name)
        self.stderr.write(f"Key {key.prefix}… for agent {found.name}; it is shown only now:")
        self.stdout.write(plain)
