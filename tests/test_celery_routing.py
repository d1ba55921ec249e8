"""Heavy tasks go to the training queue (GPU workers), light ones stay on the default queue."""
import pytest
from django.conf import settings

from annotate.celery import app
from labeling.tasks import run_import_job
from rewardtrain.tasks import (
    build_pair_dataset_task,
    generate_answers_task,
    requeue_stale_generation_jobs_task,
    score_answers_task,
    train_reward_model_task,
)


@pytest.mark.parametrize(
    "task, queue",
    [
        (train_reward_model_task, "training"),
        (score_answers_task, "training"),
        (build_pair_dataset_task, "celery"),
        (run_import_job, "celery"),
        (generate_answers_task, "generation"),
        (requeue_stale_generation_jobs_task, "celery"),
    ],
)
def test_tasks_are_routed_to_their_queue(task, queue):
    route = app.amqp.router.route({}, task.name, args=(), kwargs={})
    assert route["queue"].name == queue


# The generation tasks moved from labeling.tasks to rewardtrain.tasks under the names they had: routes, the beat
# schedule and messages already in a broker name them so.
@pytest.mark.parametrize(
    "name, task",
    [
        ("labeling.tasks.generate_answers_task", generate_answers_task),
        ("labeling.tasks.requeue_stale_generation_jobs_task", requeue_stale_generation_jobs_task),
    ],
)
def test_moved_tasks_keep_their_registered_names(name, task):
    assert task.name == name
    assert app.tasks[name].run.__module__ == "rewardtrain.tasks"
    assert app.tasks[name].run is task.run


def test_the_beat_schedule_and_routes_name_registered_tasks():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry
    for name in settings.CELERY_TASK_ROUTES:
        assert name in app.tasks, name


def test_the_moved_generation_task_keeps_its_options():
    assert (generate_answers_task.acks_late, generate_answers_task.reject_on_worker_lost) == (True, True)
