"""Migrating forward across the moves of models out of labeling keeps every row.

ApiToken and AuditEvent moved to core; GenerationJob then moved to rewardtrain. The database is taken back to
where it was before a move (for the first: labeling 0015_agreement_backlog, rewardtrain's latest before the moves,
no core), rows are written through that state's historical models, and the database is migrated forward to the
latest: every table keeps its rows, and the new models (core.models, rewardtrain.models) read them back. The moves
are state only, so the tables are the same ones throughout. The database is left at the latest migrations.
"""
import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE_MOVE = ("labeling", "0015_agreement_backlog")
# rewardtrain's latest before GenerationJob moved in (its 0004 needs labeling 0016, after the move to core).
REWARDTRAIN_BEFORE_MOVES = ("rewardtrain", "0003_model_names_from_models_dir")
# Just before GenerationJob moved from labeling to rewardtrain: after the move to core.
BEFORE_GENERATION_MOVE = [("labeling", "0016_move_to_core"), ("core", "0001_initial"), REWARDTRAIN_BEFORE_MOVES]
TABLES = [
    "auth_user", "auth_group", "labeling_queue", "labeling_prompt", "labeling_answer",
    "labeling_apitoken", "labeling_auditevent", "labeling_generationjob",
]  # fmt: skip
GENERATION_TABLES = ["auth_user", "labeling_queue", "labeling_prompt", "labeling_generationjob"]


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connection)  # a fresh loader reads what is applied now


def _counts(tables=TABLES) -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def _latest(executor: MigrationExecutor) -> list[tuple[str, str]]:
    return executor.loader.graph.leaf_nodes()


def test_rows_written_before_the_move_are_read_through_the_core_models_after_it():
    executor = _executor()
    before = [BEFORE_MOVE, REWARDTRAIN_BEFORE_MOVES]
    try:
        executor.migrate([*before, ("core", None)])
        executor = _executor()
        assert ("core", "0001_initial") not in executor.loader.applied_migrations
        assert ("labeling", "0016_move_to_core") not in executor.loader.applied_migrations

        old = executor.loader.project_state(before).apps
        User, Group = old.get_model("auth", "User"), old.get_model("auth", "Group")
        Queue, Prompt, Answer = (old.get_model("labeling", name) for name in ("Queue", "Prompt", "Answer"))
        OldToken, OldEvent = old.get_model("labeling", "ApiToken"), old.get_model("labeling", "AuditEvent")
        OldGenerationJob = old.get_model("labeling", "GenerationJob")

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
        job = OldGenerationJob.objects.create(
            queue=queue, model_name="smollm2", answers_per_prompt=3, seed=7, status="failed", attempts=3,
            errors=[{"prompt_id": prompt.pk, "error": "too long"}], error="stopped", created_by=ml,
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
    from rewardtrain.models import GenerationJob

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
    _assert_generation_job_reads_back(GenerationJob, job.pk, prompt.pk, queue.pk)


def _assert_generation_job_reads_back(GenerationJob, job_id: int, prompt_id: int, queue_id: int) -> None:
    assert GenerationJob._meta.db_table == "labeling_generationjob"
    new_job = GenerationJob.objects.select_related("queue", "created_by").get(pk=job_id)
    assert (new_job.queue.pk, new_job.queue.name) == (queue_id, "Before the move")
    assert new_job.created_by.username == "ml-before"
    assert (new_job.model_name, new_job.answers_per_prompt, new_job.seed, new_job.attempts) == ("smollm2", 3, 7, 3)
    assert (new_job.status, new_job.is_finished, new_job.error) == (GenerationJob.Status.FAILED, True, "stopped")
    assert new_job.errors == [{"prompt_id": prompt_id, "error": "too long"}]
    assert (new_job.temperature, new_job.top_p, new_job.max_new_tokens) == (0.8, 0.95, 256)  # the defaults as they were
    assert list(new_job.queue.generation_jobs.all()) == [new_job]  # the reverse accessor follows the model


def test_a_generation_job_written_before_its_move_is_read_through_the_rewardtrain_model_after_it():
    executor = _executor()
    try:
        executor.migrate(BEFORE_GENERATION_MOVE)
        executor = _executor()
        assert ("rewardtrain", "0004_generation_job_from_labeling") not in executor.loader.applied_migrations
        assert ("labeling", "0017_generation_job_to_rewardtrain") not in executor.loader.applied_migrations

        old = executor.loader.project_state(BEFORE_GENERATION_MOVE).apps
        User = old.get_model("auth", "User")
        Queue, Prompt = old.get_model("labeling", "Queue"), old.get_model("labeling", "Prompt")
        OldGenerationJob = old.get_model("labeling", "GenerationJob")
        assert OldGenerationJob._meta.db_table == "labeling_generationjob"

        ml = User.objects.create(username="ml-before", password="!")
        queue = Queue.objects.create(name="Before the move", instructions="Rank them.")
        prompt = Prompt.objects.create(queue=queue, text="Why is the sky blue?", content_hash="0" * 64)
        job = OldGenerationJob.objects.create(
            queue=queue, model_name="smollm2", answers_per_prompt=3, seed=7, status="failed", attempts=3,
            errors=[{"prompt_id": prompt.pk, "error": "too long"}], error="stopped", created_by=ml,
        )  # fmt: skip
        counts = _counts(GENERATION_TABLES)
        assert all(counts[table] >= 1 for table in GENERATION_TABLES), counts

        executor = _executor()
        executor.migrate(_latest(executor))
        assert _counts(GENERATION_TABLES) == counts
    finally:
        executor = _executor()
        executor.migrate(_latest(executor))  # whatever happened, the database is left at the latest state

    from rewardtrain.models import GenerationJob

    _assert_generation_job_reads_back(GenerationJob, job.pk, prompt.pk, queue.pk)
