"""Models come from bundled names or MODELS_DIR only, never from a hub, and other names cannot probe the disk."""
import ast
import socket
from pathlib import Path

import pytest
from django.urls import reverse

from core.jobs import JobStatus
from core.tokens import issue_token
from rewardtrain import runs
from rewardtrain.ml.backbones import make_tiny_model
from rewardtrain.ml.model_sources import ModelFiles, UnknownModel, check_model_name, resolve_model
from rewardtrain.models import PairDataset, Policy, TrainingRun
from tests.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = {"minilm": lambda: ModelFiles("/bundled/minilm")}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        pytest.fail(f"tried to reach the network: {args[-1] if args else kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def models_root(tmp_path) -> Path:
    root = tmp_path / "models"
    for name in ("mine", "org/theirs"):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
    return root


def refusal(name: str, models_dir: Path) -> str:
    with pytest.raises(UnknownModel) as error:
        resolve_model(name, models_dir=models_dir, bundled=BUNDLED)
    return str(error.value).replace(repr(name), "NAME")


def test_bundled_names_and_model_directories_resolve(models_root):
    assert resolve_model("minilm", models_dir=models_root, bundled=BUNDLED) == ModelFiles("/bundled/minilm")
    assert resolve_model("mine", models_dir=models_root, bundled=BUNDLED) == ModelFiles(str(models_root / "mine"))
    theirs = resolve_model(" org/theirs ", models_dir=models_root, bundled=BUNDLED)
    assert theirs == ModelFiles(str(models_root / "org" / "theirs"))


def test_every_other_name_gets_the_same_error_whether_or_not_the_path_exists(models_root, tmp_path, no_network):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (models_root / "escape").symlink_to(outside)
    (models_root / "not-a-model").mkdir()
    names = [
        str(outside), str(tmp_path / "missing"), "/etc", "/etc/passwd", "../outside", "mine/../../outside",
        "escape", "not-a-model", "nothing-here", "~", "~/x", "gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct",
        "C:\\models\\x", "mine\x00", "",
    ]  # fmt: skip
    messages = {name: refusal(name, models_root) for name in names}
    assert set(messages.values()) == {
        "Unknown model NAME: use minilm, or the name of a model directory in the models directory (MODELS_DIR)."
    }, messages


def test_check_makes_nothing_and_refuses_like_resolve(models_root):
    made = []
    bundled = {"tiny": lambda: made.append(1)}
    check_model_name("tiny", models_dir=models_root, bundled=bundled)
    check_model_name("mine", models_dir=models_root, bundled=bundled)
    assert made == []
    with pytest.raises(UnknownModel, match="use tiny, or the name"):
        check_model_name(str(models_root / "mine"), models_dir=models_root, bundled=bundled)
    with pytest.raises(UnknownModel):
        check_model_name("mine", models_dir=None, bundled=bundled)


@pytest.fixture
def ml_api(client, db):
    _, key = issue_token(user=make_user("ml1", "ml"), name="t")
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


@pytest.mark.django_db
def test_a_run_naming_a_path_or_hub_id_is_refused_before_it_is_recorded(client, ml_api, settings, tmp_path, no_network):
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED, rows=10)
    existing = make_tiny_model(tmp_path / "elsewhere")
    make_tiny_model(settings.MODELS_DIR / "in-models")
    answers = {}
    for name in (str(existing), str(tmp_path / "missing"), "org/model", "in-models"):
        response = client.post(
            reverse("api-run-list"), {"dataset": dataset.pk, "base_model": name, "epochs": 1},
            content_type="application/json", **ml_api,
        )  # fmt: skip
        answers[name] = (response.status_code, response.json().get("base_model", [""])[0].replace(repr(name), "NAME"))
    assert answers["in-models"][0] == 201
    refused = [answers[name] for name in answers if name != "in-models"]
    assert {status for status, _ in refused} == {400}
    assert len({message for _, message in refused}) == 1 and "MODELS_DIR" in refused[0][1]
    assert list(TrainingRun.objects.values_list("base_model", flat=True)) == ["in-models"]

    client.force_login(make_user("ml2", "ml"))
    page = client.post(reverse("ml-runs"), {"dataset": dataset.pk, "base_model": str(existing), "max_length": 64,
                                            "learning_rate": 1e-3, "epochs": 1, "prompts_per_batch": 4, "seed": 0})
    assert page.status_code == 200 and "Unknown model" in page.content.decode()
    assert TrainingRun.objects.count() == 1
    with pytest.raises(UnknownModel):
        runs.request_training_run(dataset=dataset, base_model=str(existing))


@pytest.mark.django_db
def test_a_policy_naming_a_path_or_an_uncached_hub_id_is_refused(client, tmp_path):
    """Generation jobs sample from registered policies; a page or the API cannot register a server path."""
    (tmp_path / "config.json").write_text("{}")
    client.force_login(make_user("ml1", "ml"))
    for source in (str(tmp_path), "../" + tmp_path.name, "nobody/no-such-model"):
        response = client.post(reverse("ml-policies"), {"source": source})
        assert response.status_code == 200 and "Unknown model" in response.content.decode(), source
        response = client.post("/api/v1/policies/", {"source": source}, content_type="application/json")
        assert response.status_code == 400 and "Unknown model" in response.json()["source"][0], source
    assert not Policy.objects.exists()


def test_a_hub_id_given_to_the_core_loader_never_reaches_the_network(no_network, monkeypatch):
    import huggingface_hub.constants

    from rewardtrain.ml.train import BaseModelError, load_backbone

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as in a process that never set it
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    with pytest.raises(BaseModelError, match="Cannot load base model 'no-such-org/no-such-model'"):
        load_backbone("no-such-org/no-such-model")


def test_load_from_disk_is_the_only_from_pretrained_of_the_platform():
    calls = []
    for folder in ("annotate", "labeling", "rewardtrain", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert [call.split(":")[0] for call in calls] == ["rewardtrain/ml/model_sources.py"], calls
