"""The /api/v1/ endpoints through the real stack: who may do what, what they return, bad input, pages."""
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.jobs import JobStatus
from labeling.models import Answer, Demonstration, InstructionsVersion, Prompt, Queue, Ranking, Task
from labeling.quality import review
from rewardtrain.models import EvaluationRound, PairDataset, Policy, PolicyRun, RewardModel, SFTRun, TrainingRun
from tests.api.conftest import label_everything, token_header
from tests.conftest import make_queue, make_user

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def post(api, url, body, **extra):
    return api.post(url, json.dumps(body), content_type="application/json", **extra)


def patch(api, url, body):
    return api.patch(url, json.dumps(body), content_type="application/json")


# Who may do what ----------------------------------------------------------------------------------


@pytest.fixture
def world(labeled, labeler, queue_admin, ml_user):
    """One of everything, for the permission matrix."""
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.QUEUED)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny")
    model = RewardModel.objects.create(run=run, name="rm", path="/nowhere")
    policy = Policy.objects.create(name="base", version=1, kind="base", source="tiny")
    sft_run = SFTRun.objects.create(policy=policy, output_name="base-sft")
    policy_run = PolicyRun.objects.create(method="dpo", policy=policy, dataset=dataset, output_name="base-dpo")
    evaluation_round = EvaluationRound.objects.create(name="r", queue=labeled, baseline=policy)
    return {
        "queue": labeled.pk,
        "prompt": labeled.prompts.first().pk,
        "demonstration": Demonstration.objects.get(assignment__labeler=labeler, assignment__task__prompt__queue=labeled,
                                                   assignment__task__prompt=labeled.prompts.first()).pk,
        "ranking": Ranking.objects.filter(assignment__labeler=labeler).first().pk,
        "dataset": dataset.pk,
        "run": run.pk,
        "model": model.pk,
        "policy": policy.pk,
        "sft_run": sft_run.pk,
        "policy_run": policy_run.pk,
        "evaluation_round": evaluation_round.pk,
        "users": {"labeler": labeler, "admin": queue_admin, "ml": ml_user},
    }  # fmt: skip


# (method, url, body, status for labeler, admin, ml); anonymous always gets 401. A 400 means the
# request got past the permissions (the body is deliberately empty).
MATRIX = [
    ("get", "/queues/", None, 200, 200, 200),
    ("get", "/queues/{queue}/", None, 200, 200, 200),
    ("post", "/queues/", {}, 403, 400, 403),
    ("patch", "/queues/{queue}/", {"priority": "high"}, 403, 400, 403),
    ("post", "/queues/{queue}/prompts/", {}, 403, 400, 400),
    ("get", "/prompts/", None, 403, 200, 200),
    ("get", "/prompts/{prompt}/", None, 403, 200, 200),
    ("get", "/demonstrations/", None, 200, 200, 200),
    ("get", "/demonstrations/{demonstration}/", None, 200, 200, 200),
    ("get", "/rankings/", None, 200, 200, 200),
    ("get", "/rankings/{ranking}/", None, 200, 200, 200),
    ("get", "/pair-datasets/", None, 403, 403, 200),
    ("get", "/pair-datasets/{dataset}/", None, 403, 403, 200),
    ("post", "/pair-datasets/", {}, 403, 403, 400),
    ("get", "/pair-datasets/{dataset}/download/", None, 403, 403, 409),
    ("get", "/runs/", None, 403, 403, 200),
    ("get", "/runs/{run}/", None, 403, 403, 200),
    ("post", "/runs/", {}, 403, 403, 400),
    ("post", "/runs/{run}/cancel/", None, 403, 403, 200),
    ("get", "/reward-models/", None, 403, 403, 200),
    ("get", "/reward-models/{model}/", None, 403, 403, 200),
    ("post", "/reward-models/{model}/activate/", None, 403, 403, 200),
    ("post", "/reward-models/{model}/score/", {}, 403, 403, 400),
    ("get", "/policies/", None, 403, 403, 200),
    ("get", "/policies/{policy}/", None, 403, 403, 200),
    ("post", "/policies/", {}, 403, 403, 400),
    ("post", "/policies/{policy}/retire/", None, 403, 403, 200),
    ("get", "/sft-runs/", None, 403, 403, 200),
    ("get", "/sft-runs/{sft_run}/", None, 403, 403, 200),
    ("post", "/sft-runs/", {}, 403, 403, 400),
    ("post", "/sft-runs/{sft_run}/cancel/", None, 403, 403, 200),
    ("get", "/policy-runs/", None, 403, 403, 200),
    ("get", "/policy-runs/{policy_run}/", None, 403, 403, 200),
    ("post", "/policy-runs/", {}, 403, 403, 400),
    ("post", "/policy-runs/{policy_run}/cancel/", None, 403, 403, 200),
    ("get", "/evaluation-rounds/", None, 403, 403, 200),
    ("get", "/evaluation-rounds/{evaluation_round}/", None, 403, 403, 200),
    ("post", "/evaluation-rounds/", {}, 403, 403, 400),
]


@pytest.mark.parametrize(("method", "path", "body", "as_labeler", "as_admin", "as_ml"), MATRIX)
def test_permission_matrix(api, world, method, path, body, as_labeler, as_admin, as_ml):
    url = V1 + path.format(**world)
    send = getattr(api, method)
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
    assert send(url, **kwargs).status_code == 401
    for role, expected in [("labeler", as_labeler), ("admin", as_admin), ("ml", as_ml)]:
        api.force_authenticate(world["users"][role])
        response = send(url, **kwargs)
        assert response.status_code == expected, (role, response.content[:300])
    api.force_authenticate(make_user("norole"))  # signed in, but no role at all
    assert send(url, **kwargs).status_code == 403


def test_a_labeler_sees_only_the_queues_open_to_them(api, labeler):
    open_queue = make_queue("Open", prompts=1)
    make_queue("Paused", prompts=1, is_open=False)
    restricted = make_queue("Team B", prompts=1)
    restricted.labelers.add(make_user("other", "labeler"))
    api.force_authenticate(labeler)
    names = [q["name"] for q in api.get(f"{V1}/queues/").json()["results"]]
    assert names == [open_queue.name]
    assert api.get(f"{V1}/queues/{restricted.pk}/").status_code == 404
    api.force_authenticate(make_user("boss2", "admin"))
    assert len(api.get(f"{V1}/queues/").json()["results"]) == 3


def test_a_queue_not_open_to_a_labeler_answers_the_api_like_an_unknown_id(api, labeler):
    restricted = make_queue("Team B", prompts=1)
    restricted.labelers.add(make_user("other", "labeler"))
    paused = make_queue("Paused", prompts=1, is_open=False)
    unknown = max(restricted.pk, paused.pk) + 1000
    api.force_authenticate(labeler)
    for path in ["/queues/{}/", "/queues/{}/prompts/"]:
        send = api.get if path == "/queues/{}/" else api.post
        answers = [send(V1 + path.format(pk)) for pk in (unknown, restricted.pk, paused.pk)]
        assert len({(response.status_code, response.content) for response in answers}) == 1, path
        assert answers[0].status_code == (404 if send == api.get else 403)


def test_a_labeler_sees_only_their_own_labels(api, labeled, labeler, labeler2):
    api.force_authenticate(labeler)
    for kind, model in [("demonstrations", Demonstration), ("rankings", Ranking)]:
        listed = api.get(f"{V1}/{kind}/").json()["results"]
        assert len(listed) == 2 and {row["labeler"] for row in listed} == {"lab1"}
        theirs = model.objects.filter(assignment__labeler=labeler2).first()
        response = api.get(f"{V1}/{kind}/{theirs.pk}/")
        assert response.status_code == 404 and "detail" in response.json()
    api.force_authenticate(make_user("mlx", "ml"))
    assert len(api.get(f"{V1}/rankings/").json()["results"]) == 4


def test_a_labelers_rankings_look_the_same_whether_or_not_their_prompt_is_gold(api, labeled, labeler, ml_user):
    """A ranking that vanished when its prompt became gold told the labeler which prompt was gold."""
    api.force_authenticate(labeler)
    ranking = Ranking.objects.filter(assignment__labeler=labeler).select_related("assignment__task__prompt").first()
    before_list = api.get(f"{V1}/rankings/").json()
    before_one = api.get(f"{V1}/rankings/{ranking.pk}/").json()
    before_filtered = api.get(f"{V1}/rankings/?prompt={ranking.assignment.task.prompt_id}").json()
    reference = [[pk] for pk in sorted(ranking.assignment.task.prompt.answers.values_list("pk", flat=True))]
    review.set_gold(queue=labeled, prompt_id=ranking.assignment.task.prompt_id, groups=reference,
                    reason="a clear case", user=make_user("boss2", "admin"))  # fmt: skip

    assert api.get(f"{V1}/rankings/").json() == before_list
    assert api.get(f"{V1}/rankings/{ranking.pk}/").json() == before_one
    assert api.get(f"{V1}/rankings/?prompt={ranking.assignment.task.prompt_id}").json() == before_filtered
    assert ranking.pk in [row["id"] for row in before_list["results"]] and "gold_groups" not in before_one

    api.force_authenticate(ml_user)
    assert api.get(f"{V1}/rankings/{ranking.pk}/").json()["gold_groups"] == reference


# What the endpoints return ------------------------------------------------------------------------


def test_a_ranking_has_its_groups_and_per_answer_labels(api, labeled, labeler, ml_user):
    ranking = Ranking.objects.filter(assignment__labeler=labeler).select_related("assignment__task__prompt").first()
    api.force_authenticate(ml_user)
    body = api.get(f"{V1}/rankings/{ranking.pk}/").json()
    prompt = ranking.assignment.task.prompt
    answer_ids = sorted(prompt.answers.values_list("pk", flat=True))
    assert body["groups"] == [[answer_ids[0]], answer_ids[1:]]
    assert body["prompt"] == prompt.pk and body["queue"] == labeled.pk and body["labeler"] == "lab1"
    # The server caps the time the browser reports at the time since the lease.
    assert body["time_spent_ms"] == ranking.assignment.time_spent_ms is not None
    assert body["instructions_version"] == ranking.assignment.instructions_version
    by_answer = {row["answer"]: row for row in body["answers"]}
    assert by_answer[answer_ids[0]] == {"answer": answer_ids[0], "rank": 1, "rating": 6, "flags": []}
    assert by_answer[answer_ids[-1]]["rank"] == 2 and by_answer[answer_ids[-1]]["flags"] == ["hallucination"]


def test_a_prompt_has_its_answers_in_order(api, queue_admin):
    queue = make_queue("P", prompts=1, answers=3)
    prompt = queue.prompts.get()
    api.force_authenticate(queue_admin)
    body = api.get(f"{V1}/prompts/{prompt.pk}/").json()
    assert body["text"] == "Prompt 0" and body["queue"] == queue.pk
    assert [(a["position"], a["text"], a["model"]) for a in body["answers"]] == [
        (j, f"Answer {j} to prompt 0", "m") for j in range(3)
    ]


@pytest.mark.parametrize("kind", ["prompts", "rankings"])
def test_listing_takes_the_same_queries_for_many_rows_as_for_few(
    api, ml_user, labeler, kind, django_assert_max_num_queries
):
    few = make_queue("Few", prompts=2, answers=3, ranking_overlap=1)
    label_everything(few, labeler)
    api.force_authenticate(ml_user)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(f"{V1}/{kind}/").json()["results"]) == 2
    many = make_queue("Many", prompts=25, answers=9, ranking_overlap=1)
    label_everything(many, labeler)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(api.get(f"{V1}/{kind}/").json()["results"]) == 27
    assert len(small.captured_queries) <= 6


# Pushing prompts ----------------------------------------------------------------------------------

ROWS = [
    {"id": "p-1", "prompt": "Name a prime.", "answers": ["7", {"text": "9", "model": "small", "meta": {"t": 1}}]},
    {"prompt": "Say hi.", "answers": ["Hi!", "Hello."], "priority": 5, "meta": {"source": "api"}},
]


@pytest.fixture
def rank_queue(db):
    return Queue.objects.create(name="Push", task_kind=Queue.Kinds.RANKING, ranking_overlap=2)


def test_push_creates_prompts_answers_and_tasks_and_is_idempotent(api, ml_user, rank_queue):
    api.force_authenticate(ml_user)
    url = f"{V1}/queues/{rank_queue.pk}/prompts/"
    response = post(api, url, {"prompts": ROWS})
    assert response.status_code == 201 and response.json() == {"created": 2, "existing": 0}
    prime = Prompt.objects.get(queue=rank_queue, external_id="p-1")
    assert [(a.text, a.model, a.meta) for a in prime.answers.all()] == [("7", "", {}), ("9", "small", {"t": 1})]
    hi = Prompt.objects.get(queue=rank_queue, external_id="")
    assert hi.priority == 5 and hi.meta == {"source": "api"}
    assert Task.objects.filter(prompt__queue=rank_queue, kind="ranking").count() == 2

    again = post(api, url, {"prompts": ROWS})
    assert again.status_code == 200 and again.json() == {"created": 0, "existing": 2}
    grown = post(api, url, {"prompts": [*ROWS, {"id": "p-3", "prompt": "More?", "answers": ["a", "b"]}]})
    assert grown.status_code == 201 and grown.json() == {"created": 1, "existing": 2}
    assert Prompt.objects.filter(queue=rank_queue).count() == 3


TEN_ANSWERS = [f"a{i}" for i in range(10)]


@pytest.mark.parametrize(
    ("rows", "row", "message"),
    [
        ([ROWS[0], {"prompt": "x", "answers": TEN_ANSWERS}], 1, "The row has 10 answers; at most 9 are allowed."),
        ([ROWS[0], {**ROWS[0], "prompt": "other"}], 1, "The id 'p-1' is already used on row 0."),
        ([ROWS[1], ROWS[1]], 1, "Same prompt and answers as row 0"),
        ([{"prompt": 5, "answers": ["a", "b"]}], 0, "The prompt must be a string, not a number."),
        ([{"prompt": " ", "answers": ["a", "b"]}], 0, "The prompt is empty."),
        ([{"prompt": "x" * 101, "answers": ["a", "b"]}], 0, "The prompt is 101 characters long; the limit is 100."),
        ([{"prompt": "x", "answers": ["a", "y" * 101]}], 0, "The answer 2 is 101 characters long"),
        ([{"prompt": "x", "answers": ["a", "b"], "score": 1}], 0, "Unknown field(s): score."),
        ([{"prompt": "x", "answers": ["only one"]}], 0, "The row has 1 answer; a ranking needs 2 to 9"),
        ([{"prompt": "x", "answers": ["a", "b"], "priority": "high"}], 0, "The priority must be a whole number"),
        (["just a string"], 0, "A row must be a JSON object, not a string."),
    ],
)
def test_a_bad_row_is_reported_by_index_and_nothing_is_written(api, ml_user, rank_queue, settings, rows, row, message):
    settings.MAX_TEXT_CHARS = 100
    api.force_authenticate(ml_user)
    response = post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", {"prompts": rows})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["row"] for e in errors] == [row]
    assert errors[0]["message"].startswith(message), errors
    assert Prompt.objects.count() == 0 and Answer.objects.count() == 0 and Task.objects.count() == 0


def test_every_bad_row_is_reported_at_once(api, ml_user, rank_queue):
    api.force_authenticate(ml_user)
    rows = [{"prompt": ""}, ROWS[0], {"prompt": "x", "answers": TEN_ANSWERS}]
    errors = post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", {"prompts": rows}).json()["errors"]
    assert [e["row"] for e in errors] == [0, 2]


def test_an_id_taken_by_other_content_in_the_queue_is_refused(api, ml_user, rank_queue):
    api.force_authenticate(ml_user)
    url = f"{V1}/queues/{rank_queue.pk}/prompts/"
    post(api, url, {"prompts": [ROWS[0]]})
    changed = {**ROWS[0], "prompt": "Name two primes."}
    response = post(api, url, {"prompts": [ROWS[1], changed]})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"row": 1, "message": "The id 'p-1' is already in the queue with a different prompt or answers."}
    ]
    assert Prompt.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"prompt": ROWS}, "prompt", "Unknown field 'prompt'"),
        ({}, "prompts", "This field is required."),
        ({"prompts": []}, "prompts", "This list may not be empty."),
        ({"prompts": "p-1"}, "prompts", 'Expected a list of items but got type "str".'),
    ],
)
def test_a_malformed_push_body_names_the_field(api, ml_user, rank_queue, body, field, message):
    api.force_authenticate(ml_user)
    response = post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", body)
    assert response.status_code == 400
    assert response.json()[field][0].startswith(message)
    assert Prompt.objects.count() == 0


def test_push_refuses_more_rows_than_the_import_limit(api, ml_user, rank_queue, settings):
    settings.MAX_IMPORT_ROWS = 2
    api.force_authenticate(ml_user)
    rows = [{"prompt": f"p{i}", "answers": ["a", "b"]} for i in range(3)]
    response = post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", {"prompts": rows})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": 2, "message": "More than 2 rows; send them in smaller batches."}]
    assert Prompt.objects.count() == 0


def test_a_push_body_over_the_limit_gets_413_and_writes_nothing(api, ml_user, rank_queue, settings):
    settings.MAX_API_PUSH_BYTES = 2000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 500  # the push has its own, larger, limit
    api.force_authenticate(ml_user)
    url = f"{V1}/queues/{rank_queue.pk}/prompts/"
    rows = [{"prompt": f"prompt {i} " + "x" * 50, "answers": ["a", "b"]} for i in range(10)]
    assert 500 < len(json.dumps({"prompts": rows})) < 2000
    assert post(api, url, {"prompts": rows}).status_code == 201

    big = [{"prompt": f"big {i} " + "x" * 50, "answers": ["a", "b"]} for i in range(40)]
    response = post(api, url, {"prompts": big})
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than the limit of 2,000 bytes; send less at once."}
    assert Prompt.objects.count() == 10


def test_other_bodies_keep_the_usual_limit(api, queue_admin, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 500
    queue = make_queue("Small", prompts=0)
    api.force_authenticate(queue_admin)
    response = patch(api, f"{V1}/queues/{queue.pk}/", {"instructions": "x" * 600})
    assert response.status_code == 413
    queue.refresh_from_db()
    assert queue.instructions == ""


def test_push_to_an_unknown_queue_is_404_and_labelers_get_403(api, ml_user, labeler, rank_queue):
    api.force_authenticate(ml_user)
    response = post(api, f"{V1}/queues/{rank_queue.pk + 100}/prompts/", {"prompts": ROWS})
    assert response.status_code == 404 and response.json()["detail"]
    api.force_authenticate(labeler)
    assert post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", {"prompts": ROWS}).status_code == 403
    assert Prompt.objects.count() == 0


def test_push_with_a_token(api, ml_user, rank_queue):
    response = post(api, f"{V1}/queues/{rank_queue.pk}/prompts/", {"prompts": ROWS}, **token_header(ml_user))
    assert response.status_code == 201


# Queues -------------------------------------------------------------------------------------------


def test_admins_create_and_change_queues_and_instructions_are_versioned(api, queue_admin):
    api.force_authenticate(queue_admin)
    response = post(api, f"{V1}/queues/", {"name": "New", "instructions": "Rank them.", "task_kind": "both"})
    assert response.status_code == 201
    body = response.json()
    assert body["instructions_version"] == 1 and body["task_kind"] == "both" and body["prompt_count"] == 0
    queue_id = body["id"]

    changed = patch(api, f"{V1}/queues/{queue_id}/", {"instructions": "Rank them carefully.", "is_open": False})
    assert changed.status_code == 200 and changed.json()["instructions_version"] == 2
    assert patch(api, f"{V1}/queues/{queue_id}/", {"priority": 4}).json()["instructions_version"] == 2
    versions = InstructionsVersion.objects.filter(queue_id=queue_id).order_by("version")
    texts = list(versions.values_list("text", flat=True))
    assert texts == ["Rank them.", "Rank them carefully."]
    assert Queue.objects.get(pk=queue_id).is_open is False
    assert api.put(f"{V1}/queues/{queue_id}/", {}, format="json").status_code == 405


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "colour": "red"}, "colour"),
        ({"name": "X", "lease_seconds": "long"}, "lease_seconds"),
        ({"name": "X", "gold_rate": 0.9}, "gold_rate"),
        ({"name": "X", "task_kind": "essay"}, "task_kind"),
        ({"name": "Labeled"}, "name"),
        ({"name": "X", "instructions_version": 7}, "instructions_version"),
    ],
)
def test_bad_queue_fields_are_named_and_nothing_is_created(api, queue_admin, labeled, body, field):
    api.force_authenticate(queue_admin)
    response = post(api, f"{V1}/queues/", body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert Queue.objects.count() == 1


# Pages, filters and ordering ----------------------------------------------------------------------


def test_cursor_pages_cover_every_row_once(api, ml_user):
    queue = make_queue("Paged", prompts=7, answers=2)
    api.force_authenticate(ml_user)
    url, seen, pages = f"{V1}/prompts/?queue={queue.pk}&page_size=3", [], 0
    while url:
        body = api.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == sorted(queue.prompts.values_list("pk", flat=True), reverse=True)  # newest first, no gap or repeat


def test_ordering_parameter(api, ml_user):
    queue = make_queue("Ordered", prompts=4, answers=2)
    api.force_authenticate(ml_user)
    ids = [row["id"] for row in api.get(f"{V1}/prompts/?queue={queue.pk}&ordering=id").json()["results"]]
    assert ids == sorted(queue.prompts.values_list("pk", flat=True))


def test_date_range_and_other_filters(api, ml_user, labeled, labeler2):
    old, new = labeled.prompts.order_by("pk")
    Prompt.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10), excluded=True)
    day = (timezone.now() - timedelta(days=5)).date().isoformat()
    api.force_authenticate(ml_user)
    assert [r["id"] for r in api.get(f"{V1}/prompts/?created_after={day}").json()["results"]] == [new.pk]
    assert [r["id"] for r in api.get(f"{V1}/prompts/?created_before={day}").json()["results"]] == [old.pk]
    assert [r["id"] for r in api.get(f"{V1}/prompts/?excluded=true").json()["results"]] == [old.pk]
    assert api.get(f"{V1}/prompts/?created_after=yesterday").status_code == 400

    Ranking.objects.filter(assignment__labeler=labeler2).update(created_at=timezone.now() - timedelta(days=10))
    recent = api.get(f"{V1}/rankings/?created_after={day}").json()["results"]
    assert {r["labeler"] for r in recent} == {"lab1"} and len(recent) == 2
    by_name = api.get(f"{V1}/rankings/?labeler=lab2").json()["results"]
    by_id = api.get(f"{V1}/rankings/?labeler={labeler2.pk}").json()["results"]
    assert by_name == by_id and {r["labeler"] for r in by_id} == {"lab2"} and len(by_id) == 2
    for_prompt = api.get(f"{V1}/demonstrations/?prompt={new.pk}").json()["results"]
    assert {r["prompt"] for r in for_prompt} == {new.pk} and len(for_prompt) == 2
    other = make_queue("Other", prompts=1)
    assert api.get(f"{V1}/demonstrations/?queue={other.pk}").json()["results"] == []


# Pair datasets, runs, reward models ---------------------------------------------------------------


def test_ml_staff_request_a_pair_dataset(api, ml_user, labeled):
    api.force_authenticate(ml_user)
    body = {"name": "helpful", "queues": [labeled.pk], "filters": {"source": "consensus"}, "seed": 3}
    response = post(api, f"{V1}/pair-datasets/", body)
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "queued" and created["version"] == 1 and created["queues"] == [labeled.pk]
    assert created["filters"]["source"] == "consensus" and created["seed"] == 3 and created["created_by"] == "mlstaff"
    assert post(api, f"{V1}/pair-datasets/", body).json()["version"] == 2
    assert [d["version"] for d in api.get(f"{V1}/pair-datasets/?queue={labeled.pk}").json()["results"]] == [2, 1]
    assert api.get(f"{V1}/pair-datasets/?status=succeeded").json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"filters": {"source": "everyone"}}, "filters", "source"),
        ({"filters": {"colour": 1}}, "filters", "colour"),
        ({"filters": {"date_from": "monday"}}, "filters", "date_from"),
        ({"queues": []}, "queues", ""),
        ({"queues": [999999]}, "queues", "999999"),
        ({"name": "has spaces"}, "name", ""),
        ({"validation_fraction": 2}, "validation_fraction", ""),
        ({"size": 3}, "size", "Unknown field"),
    ],
)
def test_bad_dataset_requests_name_the_field(api, ml_user, labeled, body, field, needle):
    api.force_authenticate(ml_user)
    response = post(api, f"{V1}/pair-datasets/", {"name": "d", "queues": [labeled.pk]} | body)
    assert response.status_code == 400
    assert needle in response.json()[field][0]
    assert PairDataset.objects.count() == 0


def test_download_streams_a_built_dataset(api, ml_user, settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "d-v1.parquet").write_bytes(b"PAR1 data PAR1")
    dataset = PairDataset.objects.create(name="d", version=1, status="succeeded", file="datasets/d-v1.parquet")
    api.force_authenticate(ml_user)
    response = api.get(f"{V1}/pair-datasets/{dataset.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"PAR1 data PAR1"
    assert 'filename="d-v1.parquet"' in response["Content-Disposition"]
    PairDataset.objects.filter(pk=dataset.pk).update(status="failed")
    refused = api.get(f"{V1}/pair-datasets/{dataset.pk}/download/")
    assert refused.status_code == 409 and "failed" in refused.json()["detail"]


def test_runs_are_requested_on_built_datasets_and_cancelled(api, ml_user):
    queued = PairDataset.objects.create(name="q", version=1)
    built = PairDataset.objects.create(name="b", version=1, status="succeeded")
    api.force_authenticate(ml_user)
    refused = post(api, f"{V1}/runs/", {"dataset": queued.pk, "base_model": "tiny"})
    assert refused.status_code == 400 and "finished dataset" in refused.json()["dataset"][0]
    assert post(api, f"{V1}/runs/", {"dataset": built.pk, "base_model": "tiny", "epochs": 0}).status_code == 400
    assert post(api, f"{V1}/runs/", {"dataset": built.pk, "base_model": "tiny", "status": "x"}).status_code == 400
    assert TrainingRun.objects.count() == 0

    response = post(api, f"{V1}/runs/", {"dataset": built.pk, "base_model": "tiny", "epochs": 3})
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "queued" and run["epochs"] == 3 and run["dataset"] == built.pk
    assert [r["id"] for r in api.get(f"{V1}/runs/?status=queued&dataset={built.pk}").json()["results"]] == [run["id"]]
    cancelled = post(api, f"{V1}/runs/{run['id']}/cancel/", None)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_activating_a_reward_model(api, ml_user):
    dataset = PairDataset.objects.create(name="d", version=1, status="succeeded")
    first, second = (
        RewardModel.objects.create(run=TrainingRun.objects.create(dataset=dataset, base_model="tiny"), name=n, path="/")
        for n in ("a", "b")
    )
    api.force_authenticate(ml_user)
    assert post(api, f"{V1}/reward-models/{first.pk}/activate/", None).json()["is_active"] is True
    assert post(api, f"{V1}/reward-models/{second.pk}/activate/", None).json()["is_active"] is True
    assert list(RewardModel.objects.filter(is_active=True)) == [second]
    assert [m["id"] for m in api.get(f"{V1}/reward-models/?is_active=true").json()["results"]] == [second.pk]


def test_superusers_may_use_every_endpoint(api, world):
    api.force_authenticate(User.objects.create_superuser("root", password="x"))
    assert api.get(f"{V1}/runs/").status_code == 200
    assert api.get(f"{V1}/prompts/").status_code == 200
    assert len(api.get(f"{V1}/rankings/").json()["results"]) == Ranking.objects.aggregate(n=Count("pk"))["n"]
