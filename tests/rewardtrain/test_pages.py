"""ML staff pages and the score endpoint: who may use them, and what they do."""
import pytest
from django.urls import reverse

from core.jobs import JobStatus
from core.tokens import issue_token
from rewardtrain.models import PairDataset, RewardModel, TrainingRun
from tests.conftest import make_user

from .factories import marker_queue, rank_by_marker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path



@pytest.fixture
def finished_run(db):
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED, rows=10)
    return TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)


@pytest.mark.parametrize("role, expected", [(None, 302), ("labeler", 403), ("admin", 403), ("ml", 200)])
def test_ml_pages_need_the_ml_role(client, finished_run, role, expected):
    model = RewardModel.objects.create(run=finished_run, name="rm", path="/nowhere")
    if role:
        client.force_login(make_user(f"u-{role}", role))
    urls = [
        reverse("ml-datasets"),
        reverse("ml-dataset", args=[finished_run.dataset.pk]),
        reverse("ml-runs"),
        reverse("ml-run", args=[finished_run.pk]),
        reverse("ml-run-progress", args=[finished_run.pk]),
        reverse("ml-models"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == expected, url
    response = client.post(reverse("ml-model-activate", args=[model.pk]))
    assert response.status_code == (302 if role == "ml" else expected)
    model.refresh_from_db()
    assert model.is_active == (role == "ml")


def test_ml_staff_build_a_dataset_from_the_page(client, eager, django_capture_on_commit_callbacks):
    queue = marker_queue(prompts=6)
    rank_by_marker(queue, labelers=2)
    client.force_login(make_user("ml1", "ml"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("ml-datasets"),
            {"name": "marker", "queues": [queue.pk], "validation_fraction": 0.25, "seed": 7},
        )
    dataset = PairDataset.objects.get()
    assert response.url == reverse("ml-dataset", args=[dataset.pk])
    assert (dataset.status, dataset.version, dataset.rankings) == (JobStatus.SUCCEEDED, 1, 12)
    page = client.get(response.url).content.decode()
    assert dataset.sha256 in page and "Train a reward model on it" in page


def test_a_dataset_form_with_a_backwards_date_range_is_refused(client):
    queue = marker_queue(prompts=1)
    client.force_login(make_user("ml1", "ml"))
    response = client.post(
        reverse("ml-datasets"),
        {"name": "x", "queues": [queue.pk], "date_from": "2026-02-01", "date_to": "2026-01-01",
         "validation_fraction": 0.1, "seed": 0},
    )  # fmt: skip
    assert response.status_code == 200 and "ends before it starts" in response.content.decode()
    assert not PairDataset.objects.exists()


def test_training_needs_a_finished_dataset_and_a_queued_run_cancels_at_once(client, django_capture_on_commit_callbacks):
    building = PairDataset.objects.create(name="b", version=1, status=JobStatus.RUNNING)
    ready = PairDataset.objects.create(name="r", version=1, status=JobStatus.SUCCEEDED, rows=3)
    client.force_login(make_user("ml1", "ml"))
    form = {"base_model": "tiny", "max_length": 64, "learning_rate": 1e-3, "epochs": 1, "prompts_per_batch": 4,
            "seed": 0}  # fmt: skip
    response = client.post(reverse("ml-runs"), {**form, "dataset": building.pk})
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("ml-runs"), {**form, "dataset": ready.pk})
    run = TrainingRun.objects.get()
    assert response.url == reverse("ml-run", args=[run.pk]) and len(callbacks) == 1
    client.post(reverse("ml-run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED


def test_only_one_reward_model_is_active(client, finished_run):
    other_run = TrainingRun.objects.create(dataset=finished_run.dataset, base_model="tiny", status="succeeded")
    first = RewardModel.objects.create(run=finished_run, name="a", path="/a")
    second = RewardModel.objects.create(run=other_run, name="b", path="/b")
    client.force_login(make_user("ml1", "ml"))
    client.post(reverse("ml-model-activate", args=[first.pk]))
    client.post(reverse("ml-model-activate", args=[second.pk]))
    assert list(RewardModel.objects.filter(is_active=True)) == [second]


def test_the_score_endpoint_checks_who_asks_and_what(client, finished_run, tmp_path):
    from rewardtrain.ml.backbones import make_tiny_model

    model = RewardModel.objects.create(run=finished_run, name="rm", path=str(make_tiny_model(tmp_path / "tiny")))
    url = reverse("api-reward-model-score", args=[model.pk])
    body = {"prompt": "Which is better?", "answers": ["one", "two", "<script>x</script>"]}
    assert client.post(url, body, content_type="application/json").status_code == 401
    client.force_login(make_user("lab", "labeler"))
    assert client.post(url, body, content_type="application/json").status_code == 403

    staff = make_user("ml1", "ml")
    _, key = issue_token(user=staff, name="scores")
    client.logout()
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    response = client.post(url, body, content_type="application/json", **auth)
    assert response.status_code == 200
    rewards = response.json()["rewards"]
    assert len(rewards) == 3 and all(isinstance(r, float) for r in rewards)
    assert client.post(url, {"prompt": "p", "answers": []}, content_type="application/json", **auth).status_code == 400
    assert client.post(url, {"answers": ["a"]}, content_type="application/json", **auth).status_code == 400
    missing = reverse("api-reward-model-score", args=[model.pk + 100])
    assert client.post(missing, body, content_type="application/json", **auth).status_code == 404
