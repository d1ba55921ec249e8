"""The audit log: each admin and ML action, through its page or API, leaves exactly one event; a
refused action leaves none; the page lists, filters and pages them, for admins only."""
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core import audit
from core.jobs import JobStatus
from core.models import ApiToken, AuditEvent
from core.tokens import issue_token
from labeling.models import ExportSnapshot, ImportJob, Prompt, Queue
from rewardtrain.models import EvaluationRound, GenerationJob, PairDataset, Policy, RewardModel, SFTRun, TrainingRun
from tests.conftest import make_queue, make_user

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('x')</script>"


@pytest.fixture
def admin_client(client, queue_admin):
    client.force_login(queue_admin)
    return client


@pytest.fixture
def ml_client(client, ml_user):
    client.force_login(ml_user)
    return client


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def post_json(api, url, body):
    return api.post(url, json.dumps(body), content_type="application/json")


class NewEvents:
    """The events written since it was made, oldest first."""

    def __init__(self):
        self.since = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def all(self) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(pk__gt=self.since).order_by("pk"))

    def one(self, action: str) -> AuditEvent:
        events = self.all()
        assert [event.action for event in events] == [action]
        return events[0]


def assert_target(event: AuditEvent, obj) -> None:
    assert (event.target_type, event.target_id, event.target_repr) == (obj._meta.label_lower, str(obj.pk), str(obj))


# Queues -------------------------------------------------------------------------------------------


QUEUE_FORM = {
    "name": "Helpful", "instructions": "Rank them.", "task_kind": "ranking", "demonstration_overlap": 1,
    "ranking_overlap": 3, "priority": 0, "lease_seconds": 1800, "is_open": "on", "gold_rate": 0,
    "gold_threshold": 0.7,
}  # fmt: skip


def test_creating_and_editing_a_queue_on_the_page_records_what_changed(admin_client, queue_admin, labeler):
    events = NewEvents()
    assert admin_client.post(reverse("manage-queue-new"), QUEUE_FORM).status_code == 302
    queue = Queue.objects.get(name="Helpful")
    created = events.one("queue.create")
    assert created.actor == queue_admin and created.actor_name == "boss" and created.ip_address == "127.0.0.1"
    assert_target(created, queue)
    assert created.detail["changes"]["name"] == [None, "Helpful"]
    assert created.detail["changes"]["ranking_overlap"] == [None, 3]

    events = NewEvents()
    form = QUEUE_FORM | {"priority": 5, "instructions": "Rank them by harm.", "labelers": [labeler.pk]}
    assert admin_client.post(reverse("manage-queue-edit", args=[queue.pk]), form).status_code == 302
    edited = events.one("queue.update")
    assert edited.detail == {"changes": {
        "priority": [0, 5], "instructions": ["Rank them.", "Rank them by harm."], "labelers": [[], [labeler.pk]],
    }}  # fmt: skip


def test_a_refused_queue_edit_records_nothing(admin_client):
    queue = make_queue("Q", prompts=1)
    events = NewEvents()
    response = admin_client.post(reverse("manage-queue-edit", args=[queue.pk]), QUEUE_FORM | {"ranking_overlap": 0})
    assert response.status_code == 200 and response.context["form"].errors["ranking_overlap"]
    assert events.all() == []


def test_pausing_and_opening_a_queue_are_recorded(admin_client, queue_admin):
    queue = make_queue("Q", prompts=1)
    events = NewEvents()
    admin_client.post(reverse("manage-queue-toggle", args=[queue.pk]))
    admin_client.post(reverse("manage-queue-toggle", args=[queue.pk]))
    assert [(event.action, event.actor) for event in events.all()] == [
        ("queue.pause", queue_admin), ("queue.open", queue_admin)
    ]


def test_queue_changes_through_the_api_are_recorded_and_refused_ones_are_not(queue_admin):
    api = api_as(queue_admin)
    events = NewEvents()
    response = post_json(api, "/api/v1/queues/", {"name": "From API", "task_kind": "ranking"})
    assert response.status_code == 201
    assert_target(events.one("queue.create"), Queue.objects.get(name="From API"))

    events = NewEvents()
    url = f"/api/v1/queues/{response.json()['id']}/"
    assert api.patch(url, json.dumps({"is_open": False}), content_type="application/json").status_code == 200
    assert events.one("queue.update").detail == {"changes": {"is_open": [True, False]}}

    events = NewEvents()
    assert api.patch(url, json.dumps({"priority": "high"}), content_type="application/json").status_code == 400
    assert events.all() == []


# Imports ------------------------------------------------------------------------------------------


def test_an_uploaded_import_is_recorded_and_a_refused_file_is_not(admin_client, queue_admin, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    queue = make_queue("Q", prompts=0)
    events = NewEvents()
    admin_client.post(reverse("manage-queue-import", args=[queue.pk]),
                      {"file": SimpleUploadedFile("notes.txt", b"hello")})  # fmt: skip
    assert events.all() == []
    body = b'{"prompt": "Say hi.", "answers": ["Hi", "Hello"]}\n'
    admin_client.post(reverse("manage-queue-import", args=[queue.pk]),
                      {"file": SimpleUploadedFile("rows.jsonl", body)})  # fmt: skip
    event = events.one("import.request")
    assert event.actor == queue_admin
    assert_target(event, ImportJob.objects.get())
    assert event.detail == {"queue": queue.pk, "file": "rows.jsonl", "bytes": len(body)}


def test_a_push_is_recorded_with_its_counts_and_a_bad_push_is_not(ml_user):
    queue = make_queue("Q", prompts=0)
    api = api_as(ml_user)
    url = f"/api/v1/queues/{queue.pk}/prompts/"
    events = NewEvents()
    bad = post_json(api, url, {"prompts": [{"prompt": "ok", "answers": ["a", "b"]}, {"answers": ["a"]}]})
    assert bad.status_code == 400 and events.all() == []
    good = post_json(api, url, {"prompts": [{"id": "p1", "prompt": "Say hi.", "answers": ["Hi", "Hello"]}]})
    assert good.status_code == 201
    event = events.one("import.push")
    assert event.actor == ml_user and event.detail == {"rows": 1, "created": 1, "existing": 0}
    assert_target(event, queue)


# Exports, pair datasets, generation, runs, models -------------------------------------------------


def test_an_export_is_recorded_with_its_filters_and_a_bad_filter_records_nothing(ml_user):
    queue = make_queue("Q", prompts=1)
    api = api_as(ml_user)
    body = {"name": "nightly", "dataset": "pairs", "format": "jsonl", "queues": [queue.pk]}
    events = NewEvents()
    assert post_json(api, "/api/v1/exports/", body | {"filters": {"min_agreement": 2}}).status_code == 400
    assert events.all() == []
    assert post_json(api, "/api/v1/exports/", body | {"filters": {"exclude_flagged": True}}).status_code == 201
    event = events.one("export.request")
    assert_target(event, ExportSnapshot.objects.get())
    assert event.actor == ml_user
    assert event.detail == {"dataset": "pairs", "format": "jsonl", "queues": [queue.pk],
                            "filters": {"exclude_flagged": True, "exclude_skipped": False}}  # fmt: skip


def test_a_pair_dataset_request_is_recorded_and_a_bad_one_is_not(ml_user):
    queue = make_queue("Q", prompts=1)
    api = api_as(ml_user)
    events = NewEvents()
    bad = post_json(api, "/api/v1/pair-datasets/", {"name": "d", "queues": [queue.pk], "filters": {"source": "x"}})
    assert bad.status_code == 400 and events.all() == []
    assert post_json(api, "/api/v1/pair-datasets/", {"name": "d", "queues": [queue.pk], "seed": 3}).status_code == 201
    event = events.one("pair_dataset.request")
    assert_target(event, PairDataset.objects.get())
    assert event.detail["queues"] == [queue.pk] and event.detail["seed"] == 3
    assert event.detail["filters"]["source"] == "labelers"


def test_a_generation_job_is_recorded_and_a_refused_form_is_not(ml_client, ml_user):
    queue = make_queue("Q", prompts=1)
    policy = Policy.objects.create(name="smollm2", version=1, kind="base", source="smollm2")
    form = {"queue": queue.pk, "policy": policy.pk, "answers_per_prompt": 2, "temperature": 0.7, "top_p": 0.9,
            "max_new_tokens": 32, "seed": 0}  # fmt: skip
    events = NewEvents()
    assert ml_client.post(reverse("ml-generation-jobs"), form | {"answers_per_prompt": 10}).status_code == 200
    assert events.all() == []
    assert ml_client.post(reverse("ml-generation-jobs"), form).status_code == 302
    event = events.one("generation.request")
    assert_target(event, GenerationJob.objects.get())
    assert event.detail == {"queue": queue.pk, "policy": policy.pk, "answers_per_prompt": 2,
                            "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 32, "seed": 0}  # fmt: skip


def test_policies_are_recorded_when_registered_and_retired_once(ml_user):
    api = api_as(ml_user)
    events = NewEvents()
    assert post_json(api, "/api/v1/policies/", {"source": "no-such-model"}).status_code == 400
    assert events.all() == []
    response = post_json(api, "/api/v1/policies/", {"source": "smollm2"})
    assert response.status_code == 201, response.content
    policy = Policy.objects.get()
    assert_target(events.one("policy.register"), policy)
    events = NewEvents()
    for _ in range(2):
        assert post_json(api, f"/api/v1/policies/{policy.pk}/retire/", None).status_code == 200
    assert_target(events.one("policy.retire"), policy)


def test_sft_runs_are_recorded_when_requested_and_cancelled_once(ml_user, monkeypatch):
    from rewardtrain import tasks

    monkeypatch.setattr(tasks.train_sft_task, "delay", lambda run_id: None)  # no broker here
    api = api_as(ml_user)
    queue = make_queue("Demos", prompts=1, task_kind="demonstration")
    policy = Policy.objects.create(name="smollm2", version=1, kind="base", source="smollm2")
    events = NewEvents()
    bad = post_json(api, "/api/v1/sft-runs/", {"policy": policy.pk, "queues": [queue.pk], "filters": {"x": 1}})
    assert bad.status_code == 400 and "filters" in bad.json()
    assert events.all() == []
    response = post_json(api, "/api/v1/sft-runs/", {"policy": policy.pk, "queues": [queue.pk], "epochs": 1})
    assert response.status_code == 201, response.content
    run = SFTRun.objects.get()
    event = events.one("sft.request")
    assert_target(event, run)
    assert event.detail == {"policy": policy.pk, "queues": [queue.pk], "epochs": 1,
                            "filters": {"exclude_flagged": False, "exclude_skipped": False}}  # fmt: skip
    events = NewEvents()
    for _ in range(2):
        assert post_json(api, f"/api/v1/sft-runs/{run.pk}/cancel/", None).status_code == 200
    assert events.one("sft.cancel").detail == {"status": "queued"}
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_an_evaluation_round_is_recorded_when_requested_and_a_refused_one_is_not(ml_user, monkeypatch):
    from rewardtrain import tasks

    monkeypatch.setattr(tasks.run_evaluation_round_task, "delay", lambda round_id: None)  # no broker here
    api = api_as(ml_user)
    queue = Queue.objects.create(name="Fresh")
    Prompt.objects.create(queue=queue, text="Name a prime.", content_hash="p")
    base, other = (Policy.objects.create(name="p", version=v, kind="base", source="smollm2") for v in (1, 2))
    body = {"name": "sft against base", "queue": queue.pk, "baseline": base.pk, "policies": [other.pk],
            "answers_per_policy": 2, "temperature": 0.7}  # fmt: skip
    events = NewEvents()
    assert post_json(api, "/api/v1/evaluation-rounds/", body | {"policies": [base.pk]}).status_code == 400
    assert events.all() == []
    response = post_json(api, "/api/v1/evaluation-rounds/", body)
    assert response.status_code == 201, response.content
    event = events.one("evaluation.request")
    assert_target(event, EvaluationRound.objects.get())
    assert event.detail == {"name": "sft against base", "queue": queue.pk, "baseline": base.pk, "policies": [other.pk],
                            "answers_per_policy": 2, "reward_model": None, "temperature": 0.7, "top_p": 0.95,
                            "max_new_tokens": 256, "seed": 0}  # fmt: skip


def test_runs_are_recorded_when_requested_and_cancelled_once(ml_user):
    api = api_as(ml_user)
    building = PairDataset.objects.create(name="b", version=1, status=JobStatus.RUNNING)
    ready = PairDataset.objects.create(name="r", version=1, status=JobStatus.SUCCEEDED, rows=3)
    events = NewEvents()
    assert post_json(api, "/api/v1/runs/", {"dataset": building.pk, "base_model": "tiny"}).status_code == 400
    assert events.all() == []
    response = post_json(api, "/api/v1/runs/", {"dataset": ready.pk, "base_model": "tiny", "epochs": 2})
    assert response.status_code == 201
    run = TrainingRun.objects.get()
    requested = events.one("run.request")
    assert_target(requested, run)
    assert requested.detail == {"dataset": ready.pk, "base_model": "tiny", "epochs": 2}

    events = NewEvents()
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 200
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 200  # already cancelled: no change
    assert events.one("run.cancel").detail == {"status": "queued"}


def test_activating_a_model_records_the_one_it_replaced(ml_client, ml_user):
    dataset = PairDataset.objects.create(name="r", version=1, status=JobStatus.SUCCEEDED)
    runs = [TrainingRun.objects.create(dataset=dataset, base_model="tiny", status="succeeded") for _ in range(2)]
    first = RewardModel.objects.create(run=runs[0], name="a", path="/a", is_active=True)
    second = RewardModel.objects.create(run=runs[1], name="b", path="/b")
    events = NewEvents()
    ml_client.post(reverse("ml-model-activate", args=[second.pk]))
    event = events.one("model.activate")
    assert event.actor == ml_user and event.detail == {"previous": [first.pk]}
    assert_target(event, second)


# Tokens -------------------------------------------------------------------------------------------


def test_tokens_made_and_revoked_on_the_page_are_recorded_but_never_their_key(ml_client, ml_user):
    events = NewEvents()
    assert ml_client.post(reverse("ml-tokens"), {"name": ""}).status_code == 200
    assert events.all() == []
    page = ml_client.post(reverse("ml-tokens"), {"name": "nightly"}).content.decode()
    token = ApiToken.objects.get()
    created = events.one("token.create")
    assert created.actor == ml_user and created.detail == {"name": "nightly", "prefix": token.prefix}
    key = page.split("ann_", 1)[1].split("<", 1)[0]
    assert key[:20] not in json.dumps(created.detail) + created.target_repr

    events = NewEvents()
    ml_client.post(reverse("ml-token-revoke", args=[token.pk]))
    ml_client.post(reverse("ml-token-revoke", args=[token.pk]))  # already revoked: nothing more
    revoked = events.one("token.revoke")
    assert revoked.actor == ml_user and revoked.detail == {"owner": ml_user.pk}
    assert_target(revoked, token)


# Review decisions ---------------------------------------------------------------------------------


def test_a_review_decision_is_one_event_beside_each_prompts_own_record(admin_client, queue_admin):
    queue = make_queue("Q", prompts=3)
    ids = sorted(Prompt.objects.filter(queue=queue).values_list("pk", flat=True))[:2]
    bulk = reverse("manage-review-bulk", args=[queue.pk])
    events = NewEvents()
    admin_client.post(bulk, {"action": "exclude", "prompt": ids, "reason": ""})
    assert events.all() == []
    admin_client.post(bulk, {"action": "exclude", "prompt": ids, "reason": "off topic"})
    event = events.one("prompt.exclude")
    assert event.actor == queue_admin and event.detail == {"prompts": ids, "reason": "off topic"}
    assert_target(event, queue)

    events = NewEvents()
    admin_client.post(bulk, {"action": "raise_overlap", "prompt": ids[:1], "reason": "unsure", "by": "2"})
    assert events.one("prompt.raise_overlap").detail == {"prompts": ids[:1], "reason": "unsure", "by": 2}


# The page -----------------------------------------------------------------------------------------


def test_record_refuses_an_action_it_does_not_know(queue_admin):
    with pytest.raises(ValueError, match="queue.delete"):
        audit.record(actor=queue_admin, action="queue.delete")
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role, expected", [("labeler", 403), ("ml", 403), ("admin", 200)])
def test_only_admins_see_the_audit_log(client, role, expected):
    client.force_login(make_user("someone", role))
    assert client.get(reverse("manage-audit")).status_code == expected
    has_link = reverse("manage-audit") in client.get(reverse("home"), follow=True).content.decode()
    assert has_link == (role == "admin")


def test_anonymous_users_are_sent_to_log_in_and_superusers_get_in(client):
    response = client.get(reverse("manage-audit"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root", password="pw"))
    assert client.get(reverse("manage-audit")).status_code == 200


def test_the_page_lists_newest_first_escapes_text_and_filters(admin_client, queue_admin, ml_user):
    queue = make_queue(HOSTILE, prompts=0)
    audit.record(actor=queue_admin, action="queue.pause", target=queue, detail={"note": HOSTILE})
    issue_token(user=ml_user, name="script")
    old = audit.record(actor=queue_admin, action="queue.open", target=queue)
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    page = admin_client.get(reverse("manage-audit")).content.decode()
    assert HOSTILE not in page and "&lt;script&gt;" in page
    table = page.split('id="audit-table"', 1)[1]
    assert table.index("API token created") < table.index("Queue paused") < table.index("Queue opened")

    def rows(**params) -> list[str]:
        response = admin_client.get(reverse("manage-audit"), params)
        return [event.action for event, _, _ in response.context["rows"]]

    assert rows(action="queue.pause") == ["queue.pause"]
    assert rows(actor="MLSTAFF") == ["token.create"]
    assert rows(actor="boss") == ["queue.pause", "queue.open"]
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert rows(date_from=since) == ["token.create", "queue.pause"]
    assert rows(date_to=(timezone.localdate() - timedelta(days=9)).isoformat()) == ["queue.open"]


def test_a_bad_filter_names_its_field_and_lists_nothing(admin_client, queue_admin):
    audit.record(actor=queue_admin, action="queue.pause")
    response = admin_client.get(reverse("manage-audit"), {"date_from": "yesterday", "action": "no.such"})
    errors = response.context["form"].errors
    assert set(errors) == {"date_from", "action"} and response.context["rows"] == []
    assert "From: Enter a valid date." in response.content.decode()
    response = admin_client.get(reverse("manage-audit"), {"date_from": "2026-02-02", "date_to": "2026-02-01"})
    assert "date_to" in response.context["form"].errors


def test_the_page_is_paginated_and_keeps_the_filters(admin_client, queue_admin):
    AuditEvent.objects.bulk_create(AuditEvent(actor=queue_admin, actor_name="boss", action="queue.pause")
                                   for _ in range(60))  # fmt: skip
    first = admin_client.get(reverse("manage-audit"), {"action": "queue.pause"})
    assert len(first.context["rows"]) == 50 and first.context["page"].paginator.num_pages == 2
    assert "?action=queue.pause&amp;page=2" in first.content.decode()
    second = admin_client.get(reverse("manage-audit"), {"action": "queue.pause", "page": 2})
    assert len(second.context["rows"]) == 10
