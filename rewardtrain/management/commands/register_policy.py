"""Register a base policy from the command line: a bundled name, a MODELS_DIR directory, a cached Hub id, or
(here only) a directory anywhere on the server. `--demo` registers the bundled ones once, for `make run`."""
from django.core.management.base import BaseCommand, CommandError

from rewardtrain import policies
from rewardtrain.models import Policy


class Command(BaseCommand):
    help = "Register a base policy (rewardtrain.policies)."

    def add_arguments(self, parser):
        parser.add_argument("source", nargs="?", help=policies.SOURCE_HELP)
        parser.add_argument("--name", default="", help="The policy's name (default: from the source).")
        parser.add_argument("--description", default="")
        parser.add_argument("--path", action="store_true", help="SOURCE is a model directory anywhere on this server.")
        parser.add_argument(
            "--demo", action="store_true", help="Register smollm2 and tiny unless a policy has that source already."
        )

    def handle(self, *args, source=None, name="", description="", path=False, demo=False, **options):
        if demo:
            for bundled in policies.BUNDLED_GENERATORS:
                if not Policy.objects.filter(source=bundled).exists():
                    self._register(source=bundled, description="Bundled with the platform: no download.")
            return
        if not source:
            raise CommandError("Give a SOURCE, or --demo.")
        self._register(source=source, name=name, description=description, local_path=path)

    def _register(self, **fields) -> None:
        try:
            policy = policies.register_base_policy(**fields)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Registered {policy} (policy {policy.pk}) from {policy.source}.")
