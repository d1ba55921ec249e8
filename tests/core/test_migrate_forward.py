"""Migrating forward across the move of ApiToken and AuditEvent from labeling to core keeps every row.

The database is taken back to where it was before the move (labeling 0015_agreement_backlog, rewardtrain's latest,
no core), rows are written through that state's historical models, and the database is migrated forward to the
latest: every table keeps its rows, and the new models (core.models) read them back. The move is state only, so
the tables are the same ones throughout. The database is left at the latest migrations.
"""
import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE_MOVE = ("labeling", "0015_agreement_backlog")
TABLES = [
    "auth_user", "auth_group", "labeling_queue", "labeling_prompt", "labeling_answer",
    "labeling_apitoken", "labeling_auditevent",
]  # fmt: skip


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connection)  # a fresh loader reads what is applied now


def _counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def _latest(executor: MigrationExecutor) -> list[tuple[str, str]]:
    return executor.loader.graph.leaf_nodes()


def test_rows_written_before_the_move_are_read_through_the_core_models_after_it():
    executor = _executor()
    rewardtrain = executor.loader.graph.leaf_nodes("rewardtrain")[0]
    before = [BEFORE_MOVE, rewardtrain]
    try:
        executor.migrate([*before, ("core", None)])
        executor = _executor()
        assert ("core", "0001_initial") not in executor.loader.applied_migrations
        assert ("labeling", "0016_move_to_core") not in executor.loader.applied_migrations

        old = executor.loader.project_state(before).apps
        User, Group = old.get_model("auth", "User"), old.get_model("auth", "Group")
        Queue, Prompt, Answer = (old.get_model("labeling", name) for name in ("Queue", "Prompt", "Answer"))
        OldToken, OldEvent = old.get_model("labeling", "ApiToken"), old.get_model("labeling", "AuditEvent")

        ml = User.objects.create(username="ml-before", password="!")
        Group.objects.create(name="team-before")
        queue = Queue.objects.create(name="Before the move", instructions="Rank them.")
        prompt = Prompt.objects.create(queue=queue, text="Why is the sky blue?", content_hash="0" * 64)
        Answer.objects.bulk_create(Answer(prompt=prompt, position=i, text=f"answer {i}") for i in range(2))
        token = OldToken.objects.create(
            user=ml, name="nightly export", key_hash=hashlib.sha256(b"ann_key").hexdigest(), prefix="ann_key"
        )
        event = OldEvent.objects.create(
            actor=ml, actor_name="ml-before", action="token.create", target_type="labeling.apitoken",
            target_id=str(token.pk), target_repr="nightly export (ann_key…)", detail={"name": "nightly export"},
            ip_address="192.0.2.7",
        )  # fmt: skip
        counts = _counts()
        assert all(counts[table] >= 1 for table in TABLES), counts

        executor = _executor()
        executor.migrate(_latest(executor))
        assert _counts() == counts
    finally:
        executor = _executor()
        executor.migrate(_latest(executor))  # whatever happened, the database is left at the latest state

    from core.models import ApiToken, AuditEvent
    from labeling.models import Prompt as NewPrompt

    assert ApiToken._meta.db_table == "labeling_apitoken" and AuditEvent._meta.db_table == "labeling_auditevent"
    new_token = ApiToken.objects.select_related("user").get(pk=token.pk)
    assert (new_token.user.username, new_token.name, new_token.prefix, new_token.is_revoked) == (
        "ml-before", "nightly export", "ann_key", False
    )
    assert new_token.key_hash == hashlib.sha256(b"ann_key").hexdigest()
    new_event = AuditEvent.objects.select_related("actor").get(pk=event.pk)
    assert (new_event.actor.username, new_event.action, new_event.detail, new_event.ip_address) == (
        "ml-before", "token.create", {"name": "nightly export"}, "192.0.2.7"
    )
    assert list(new_event.actor.api_tokens.all()) == [new_token]  # the reverse accessors follow the models
    new_prompt = NewPrompt.objects.select_related("queue").get(pk=prompt.pk)
    assert (new_prompt.queue.name, new_prompt.answers.count()) == ("Before the move", 2)
