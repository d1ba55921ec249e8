"""Load the demo: role users with fresh passwords (printed), and two demo queues with prompts."""
import os
import secrets
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from core.roles import ADMIN, LABELER, ML
from labeling.models import Queue
from labeling.queues.importing import import_prompts
from labeling.queues.services import record_instructions

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_USERS = [
    ("labeler1", [LABELER]),
    ("labeler2", [LABELER]),
    ("labeler3", [LABELER]),
    ("admin", [ADMIN]),
    ("mlstaff", [ML]),
]
RANKING_INSTRUCTIONS = """\
Read the prompt, then **rank the answers from best to worst**.

- *Best* means most helpful, truthful and harmless for the person who asked.
- Put answers of the same quality in the same rank (a tie).
- Rate each answer from 1 (terrible) to 7 (excellent) and tick any flag that applies.

Keyboard: `1`–`9` select an answer, `Enter` places it, `Shift+↑/↓` moves it, `t` ties it with the one above,
`Shift+1`–`7` rates it, `Ctrl+Enter` submits. Press `?` for the full list.
"""
DEMONSTRATION_INSTRUCTIONS = """\
Write the answer you would want an excellent assistant to give: correct, clear, kind and to the point.
Markdown is fine. If the prompt is unclear or harmful, skip it and say why.
"""


class Command(BaseCommand):
    help = "Create demo users (passwords printed) and demo queues with prompts. Safe to run again."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD")
        with transaction.atomic():
            lines = []
            for username, roles in DEMO_USERS:
                user, _ = User.objects.get_or_create(username=username)
                user_password = password or secrets.token_urlsafe(9)
                user.set_password(user_password)
                user.save()
                user.groups.set(Group.objects.filter(name__in=roles))
                lines.append(f"  {username:<10} {user_password:<16} ({', '.join(roles)})")
            ranking, ranking_created = Queue.objects.get_or_create(
                name="Demo: rank answers",
                defaults={"instructions": RANKING_INSTRUCTIONS, "task_kind": Queue.Kinds.RANKING, "priority": 10},
            )
            demonstration, demonstration_created = Queue.objects.get_or_create(
                name="Demo: write demonstrations",
                defaults={"instructions": DEMONSTRATION_INSTRUCTIONS, "task_kind": Queue.Kinds.DEMONSTRATION},
            )
            for queue in (ranking, demonstration):
                record_instructions(queue)
            for queue, created, filename in [
                (ranking, ranking_created, "ranking_prompts.jsonl"),
                (demonstration, demonstration_created, "demonstration_prompts.jsonl"),
            ]:
                with open(DEMO_DIR / filename, "rb") as fileobj:
                    report = import_prompts(queue=queue, fileobj=fileobj, filename=filename)
                if report.errors and created:
                    raise RuntimeError(f"demo file {filename} is invalid: {report.errors}")
                if report.errors:
                    # A database loaded before the demo file changed (its answers were sampled again):
                    # `make run` must still start, with the demo as it was.
                    self.stdout.write(
                        f"Queue “{queue.name}” holds an older version of {filename} ({report.errors[0].reason}); "
                        "it was left as it is. Delete the queue (or var/) to load the current demo."
                    )
                    continue
                self.stdout.write(
                    f"Queue “{queue.name}”: {report.created} prompts added, {report.existing} already there."
                )
        self.stdout.write("Demo users (username, password, role):")
        self.stdout.write("\n".join(lines))
