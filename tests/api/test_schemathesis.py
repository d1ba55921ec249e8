"""Schemathesis against the OpenAPI schema, as each role: generated requests to every operation, through
the WSGI app, never get a 500, and the responses the schema describes match it.

The schema documents the success responses and some errors, not every 400/401/403/404, so status codes
are not checked against it (status_code_conformance); a 500 is always a failure (not_a_server_error).
Bounded and derandomized: SCHEMATHESIS_EXAMPLES requests per operation and role (10 unless set).
"""
import json
import os
import secrets
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from annotate.wsgi import application
from core.jobs import JobStatus
from core.tokens import issue_token
from labeling.models import Demonstration, ExportSnapshot, Ranking
from rewardtrain.models import EvaluationRound, PairDataset, Policy, PolicyRun, RewardModel, SFTRun, TrainingRun
from tests.api.conftest import label_everything
from tests.conftest import make_queue, make_user

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
ROLES = ["anonymous", "labeler", "admin", "ml"]
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def openapi_document() -> dict:
    """The schema the app serves on /api/schema/, as JSON."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = application  # requests go through the WSGI app, in the test's transaction


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Django closes the database connection when a request starts and ends (close_old_connections),
    which would close the test's transaction under the WSGI app; its own test client turns that off too."""
    signals = [request_started, request_finished]
    for signal in signals:
        signal.disconnect(close_old_connections)
    yield
    for signal in signals:
        signal.connect(close_old_connections)


@dataclass
class Credentials:
    ids: dict  # an existing object's id per collection ("queues", "runs", …)
    headers: dict = field(default_factory=dict)
    cookies: dict = field(default_factory=dict)


@pytest.fixture(params=ROLES)
def credentials(request, db, settings) -> Credentials:
    """A world with one of everything (so some generated ids exist) and the role's credentials: an API
    token for ML staff (only they may hold one), a session with its CSRF token for the others."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # set up each test fast
    labeler, labeler2 = make_user("lab1", "labeler"), make_user("lab2", "labeler")
    queue = make_queue("Labeled", prompts=1, answers=3, task_kind="both", ranking_overlap=2, demonstration_overlap=2)
    label_everything(queue, labeler)
    label_everything(queue, labeler2)
    assert Demonstration.objects.exists() and Ranking.objects.exists()
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.QUEUED)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny")
    model = RewardModel.objects.create(run=run, name="rm", path="/nowhere")  # its files are gone
    export = ExportSnapshot.objects.create(name="e", version=1, dataset="pairs", format="jsonl")
    policy = Policy.objects.create(name="base", version=1, kind="base", source="tiny")
    sft_run = SFTRun.objects.create(policy=policy, output_name="base-sft")
    policy_run = PolicyRun.objects.create(method="dpo", policy=policy, dataset=dataset, output_name="base-dpo")
    evaluation_round = EvaluationRound.objects.create(name="r", queue=queue, baseline=policy)
    ids = {
        "queues": queue.pk, "prompts": queue.prompts.get().pk, "pair-datasets": dataset.pk, "runs": run.pk,
        "demonstrations": Demonstration.objects.filter(assignment__labeler=labeler).first().pk,
        "rankings": Ranking.objects.filter(assignment__labeler=labeler).first().pk, "reward-models": model.pk,
        "exports": export.pk, "policies": policy.pk, "sft-runs": sft_run.pk,
        "policy-runs": policy_run.pk,
        "evaluation-rounds": evaluation_round.pk,
    }  # fmt: skip

    role = request.param
    if role == "anonymous":
        return Credentials(ids)
    if role == "ml":
        _, key = issue_token(user=make_user("mlstaff", "ml"), name="schemathesis")
        return Credentials(ids, headers={"Authorization": f"Token {key}"})
    client = Client()
    client.force_login(labeler if role == "labeler" else make_user("boss", "admin"))
    csrf = secrets.token_hex(16)  # a 32-character secret: Django takes it unmasked in the header
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}
    return Credentials(ids, headers={"X-CSRFToken": csrf}, cookies=cookies)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_generated_request_without_a_server_error(case, credentials):
    response = case.call(headers=credentials.headers, cookies=credentials.cookies)
    case.validate_response(response, checks=CHECKS, headers=credentials.headers)
    if "id" in (case.path_parameters or {}):
        # A generated id hardly ever exists: send the same request to an object that does.
        case.path_parameters = {**case.path_parameters, "id": credentials.ids[case.path.split("/")[3]]}
        response = case.call(headers=credentials.headers, cookies=credentials.cookies)
        case.validate_response(response, checks=CHECKS, headers=credentials.headers)


# What schemathesis found, pinned ------------------------------------------------------------------


@pytest.mark.django_db
def test_scoring_with_a_model_whose_files_are_gone_says_so_instead_of_failing(ml_user):
    from rest_framework.test import APIClient

    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED)
    model = RewardModel.objects.create(run=TrainingRun.objects.create(dataset=dataset), name="rm", path="/nowhere")
    api = APIClient()
    api.force_authenticate(ml_user)
    response = api.post(f"/api/v1/reward-models/{model.pk}/score/", {"prompt": "p", "answers": ["a"]}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Reward model {model.pk} cannot be loaded: No reward model in")


@pytest.mark.django_db
def test_a_labelers_rankings_match_the_schema_without_gold_groups():
    from rest_framework.test import APIClient

    ranking = openapi_document()["components"]["schemas"]["DocumentedRanking"]
    assert "gold_groups" in ranking["properties"] and "gold_groups" not in ranking["required"]
    push_errors = openapi_document()["components"]["schemas"]["PushErrors"]
    assert set(push_errors["properties"]) == {"errors", "detail"} and not push_errors.get("required")
    api = APIClient()
    api.force_authenticate(make_user("boss", "admin"))
    queue = make_queue("Q", prompts=0)
    response = api.post(f"/api/v1/queues/{queue.pk}/prompts/", b"\x90not json", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]
