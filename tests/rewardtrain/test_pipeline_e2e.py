"""End to end on the real stack: rankings in PostgreSQL → a real Celery worker on Redis builds the
pair dataset and trains a reward model on the training queue → the score API ranks a new answer with
the marker above one without. Then a long run is cancelled from the page while it trains."""
import pytest
from django.urls import reverse

from core.jobs import JobStatus
from rewardtrain import datasets, runs
from rewardtrain.ml.backbones import make_tiny_model
from rewardtrain.models import PairDataset, RewardModel, TrainingRun
from tests.conftest import make_user

from .factories import MARKER, WORDS, marker_queue, rank_by_marker

pytestmark = pytest.mark.worker


def test_rankings_to_a_trained_reward_model_through_the_worker(live_worker, client, settings, tmp_path):
    queue = marker_queue(prompts=40, answers=4)
    rank_by_marker(queue, labelers=2)
    staff = make_user("ml-e2e", "ml")
    dataset = datasets.request_pair_dataset(
        name="marker", queues=[queue], filters={}, validation_fraction=0.25, seed=0, user=staff
    )

    live_worker.wait_finished(dataset, what="the pair dataset", timeout=60)
    assert dataset.status == JobStatus.SUCCEEDED, dataset.error
    assert dataset.rows == 80 * 4 and dataset.validation_rows > 0

    make_tiny_model(settings.MODELS_DIR / "tiny-marker", vocab_words=WORDS + [MARKER])
    run = runs.request_training_run(
        dataset=dataset, user=staff, base_model="tiny-marker", max_length=32, learning_rate=3e-3, epochs=6,
        prompts_per_batch=4, seed=0,
    )  # fmt: skip

    live_worker.wait_finished(run, what="the training run", timeout=300)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.metrics["validation"]["accuracy"] > 0.9, run.metrics
    assert run.metrics["validation"]["length_baseline"]["accuracy"] < 0.9
    assert run.history and run.progress_percent == 100
    model = RewardModel.objects.get(run=run)

    client.force_login(staff)
    response = client.post(
        reverse("api-reward-model-score", args=[model.pk]),
        {"prompt": "question 99 river stone", "answers": ["lamp field paper window", f"lamp field {MARKER} window"]},
        content_type="application/json",
    )
    assert response.status_code == 200
    unmarked, marked = response.json()["rewards"]
    assert marked > unmarked

    # A long run, cancelled from its page while the worker trains it.
    long_run = runs.request_training_run(
        dataset=dataset, user=staff, base_model="tiny-marker", max_length=32, learning_rate=1e-3, epochs=100,
        prompts_per_batch=1, seed=1,
    )  # fmt: skip

    def training() -> bool:
        long_run.refresh_from_db()
        return long_run.step > 0 or long_run.is_finished

    live_worker.wait_for(training, what="the long run to start", timeout=60)
    client.post(reverse("ml-run-cancel", args=[long_run.pk]))
    live_worker.wait_for(
        lambda: TrainingRun.objects.get(pk=long_run.pk).is_finished, what="the cancelled run to stop", timeout=60
    )
    long_run.refresh_from_db()
    assert long_run.status == JobStatus.CANCELLED
    assert not RewardModel.objects.filter(run=long_run).exists()
    assert PairDataset.objects.count() == 1
