"""Heavy tasks go to the training queue (GPU workers), light ones stay on the default queue."""
import pytest

from annotate.celery import app
from labeling.tasks import run_import_job
from rewardtrain.tasks import build_pair_dataset_task, score_answers_task, train_reward_model_task


@pytest.mark.parametrize(
    "task, queue",
    [
        (train_reward_model_task, "training"),
        (score_answers_task, "training"),
        (build_pair_dataset_task, "celery"),
        (run_import_job, "celery"),
    ],
)
def test_tasks_are_routed_to_their_queue(task, queue):
    route = app.amqp.router.route({}, task.name, args=(), kwargs={})
    assert route["queue"].name == queue
