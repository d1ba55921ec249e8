"""Who may reach what: every URL the resolver knows x anonymous / no role / labeler / admin / ML staff.

MATRIX lists each URL name with the status each kind of user gets. test_no_url_is_forgotten walks
Django's URL resolver, so a URL added later without an entry here (or in the API matrix of
tests/api/test_api.py, which this reuses) fails the suite.
"""
import json

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from labeling.assignment.services import lease_next_task
from labeling.models import Assignment, Ranking, TaskKind
from tests.api.test_api import MATRIX as API_MATRIX
from tests.conftest import make_user
from tests.security.conftest import sign_in

pytestmark = pytest.mark.django_db

WHO = ("anonymous", "norole", "labeler", "admin", "ml")
LOGIN = "login"  # a redirect to the login page
ADMIN_PAGE = (LOGIN, 403, 403, 200, 403)
ML_PAGE = (LOGIN, 403, 403, 403, 200)
POST_ONLY = 405  # require_POST answers a GET before asking who you are


def only_labeler(status):
    return (LOGIN, 403, status, 403, 403)


def only_admin(status):
    return (LOGIN, 403, 403, status, 403)


def only_ml(status):
    return (LOGIN, 403, 403, 403, status)


def api(ml_status, *, labeler=403, admin=403, norole=403):
    return (401, norole, labeler, admin, ml_status)


# (URL name, method, path with {object ids}, statuses for WHO). An empty POST body: a 200/400 for the
# allowed role means the request got past the permission check to the form's validation.
MATRIX = [
    ("healthz", "get", "/healthz", (200, 200, 200, 200, 200)),
    ("home", "get", "/", (LOGIN, 200, 200, 302, 302)),
    ("login", "get", "/login/", (200, 302, 302, 302, 302)),
    ("login", "post", "/login/", (200, 302, 302, 302, 302)),
    ("logout", "post", "/logout/", (302, 302, 302, 302, 302)),
    ("next-task", "get", "/next/", only_labeler(302)),
    ("queue-next-task", "get", "/queues/{queue_id}/next/", only_labeler(302)),
    ("task", "get", "/tasks/{assignment_id}/", only_labeler(200)),
    ("task-submit", "get", "/tasks/{assignment_id}/submit/", (POST_ONLY,) * 5),
    ("task-submit", "post", "/tasks/{assignment_id}/submit/", only_labeler(400)),
    ("task-skip", "post", "/tasks/{assignment_id}/skip/", only_labeler(400)),
    ("markdown-preview", "post", "/preview/", only_labeler(200)),
    ("manage-queues", "get", "/manage/queues/", ADMIN_PAGE),
    ("manage-queue-new", "get", "/manage/queues/new/", ADMIN_PAGE),
    ("manage-queue-new", "post", "/manage/queues/new/", ADMIN_PAGE),
    ("manage-queue", "get", "/manage/queues/{queue_id}/", ADMIN_PAGE),
    ("manage-queue-edit", "get", "/manage/queues/{queue_id}/edit/", ADMIN_PAGE),
    ("manage-queue-edit", "post", "/manage/queues/{queue_id}/edit/", ADMIN_PAGE),
    ("manage-queue-toggle", "get", "/manage/queues/{queue_id}/toggle/", (POST_ONLY,) * 5),
    ("manage-queue-toggle", "post", "/manage/queues/{queue_id}/toggle/", only_admin(302)),
    ("manage-queue-import", "post", "/manage/queues/{queue_id}/import/", only_admin(302)),
    ("manage-queue-agreement", "get", "/manage/queues/{queue_id}/agreement/", ADMIN_PAGE),
    ("manage-queue-agreement-csv", "get", "/manage/queues/{queue_id}/agreement.csv", ADMIN_PAGE),
    ("manage-import", "get", "/manage/imports/{job_id}/", ADMIN_PAGE),
    ("manage-audit", "get", "/manage/audit/", ADMIN_PAGE),
    ("manage-review", "get", "/manage/queues/{queue_id}/review/", ADMIN_PAGE),
    ("manage-review-bulk", "post", "/manage/queues/{queue_id}/review/bulk/", only_admin(302)),
    ("manage-review-prompt", "get", "/manage/queues/{queue_id}/review/{prompt_id}/", ADMIN_PAGE),
    ("manage-review-action", "post", "/manage/queues/{queue_id}/review/{prompt_id}/action/", only_admin(302)),
    ("ml-generation-jobs", "get", "/ml/generation/", ML_PAGE),
    ("ml-generation-jobs", "post", "/ml/generation/", ML_PAGE),
    ("ml-generation-job", "get", "/ml/generation/{generation_job_id}/", ML_PAGE),
    ("ml-exports", "get", "/ml/exports/", ML_PAGE),
    ("ml-exports", "post", "/ml/exports/", ML_PAGE),
    ("ml-export", "get", "/ml/exports/{snapshot_id}/", ML_PAGE),
    # The export is still queued: no file to download yet.
    ("ml-export-download", "get", "/ml/exports/{snapshot_id}/download/", only_ml(404)),
    ("ml-export-card", "get", "/ml/exports/{snapshot_id}/card/", only_ml(404)),
    ("ml-datasets", "get", "/ml/datasets/", ML_PAGE),
    ("ml-datasets", "post", "/ml/datasets/", ML_PAGE),
    ("ml-dataset", "get", "/ml/datasets/{dataset_id}/", ML_PAGE),
    ("ml-runs", "get", "/ml/runs/", ML_PAGE),
    ("ml-runs", "post", "/ml/runs/", ML_PAGE),
    ("ml-run", "get", "/ml/runs/{run_id}/", ML_PAGE),
    ("ml-run-progress", "get", "/ml/runs/{run_id}/progress/", ML_PAGE),
    ("ml-run-cancel", "post", "/ml/runs/{run_id}/cancel/", only_ml(302)),
    ("ml-models", "get", "/ml/models/", ML_PAGE),
    ("ml-policies", "get", "/ml/policies/", ML_PAGE),
    ("ml-policies", "post", "/ml/policies/", ML_PAGE),
    ("ml-policy", "get", "/ml/policies/{policy_id}/", ML_PAGE),
    ("ml-policy-retire", "post", "/ml/policies/{policy_id}/retire/", only_ml(302)),
    ("ml-sft-runs", "get", "/ml/sft/", ML_PAGE),
    ("ml-sft-runs", "post", "/ml/sft/", ML_PAGE),
    ("ml-sft-run", "get", "/ml/sft/{sft_run_id}/", ML_PAGE),
    ("ml-sft-run-progress", "get", "/ml/sft/{sft_run_id}/progress/", ML_PAGE),
    ("ml-sft-run-cancel", "post", "/ml/sft/{sft_run_id}/cancel/", only_ml(302)),
    ("ml-policy-runs", "get", "/ml/policy-runs/", ML_PAGE),
    ("ml-policy-runs", "post", "/ml/policy-runs/", ML_PAGE),
    ("ml-policy-run", "get", "/ml/policy-runs/{policy_run_id}/", ML_PAGE),
    ("ml-policy-run-progress", "get", "/ml/policy-runs/{policy_run_id}/progress/", ML_PAGE),
    ("ml-policy-run-cancel", "post", "/ml/policy-runs/{policy_run_id}/cancel/", only_ml(302)),
    ("ml-evaluation-rounds", "get", "/ml/evaluation/", ML_PAGE),
    ("ml-evaluation-rounds", "post", "/ml/evaluation/", ML_PAGE),
    ("ml-evaluation-round", "get", "/ml/evaluation/{evaluation_round_id}/", ML_PAGE),
    ("ml-model-activate", "post", "/ml/models/{model_id}/activate/", only_ml(302)),
    ("ml-tokens", "get", "/ml/tokens/", ML_PAGE),
    ("ml-tokens", "post", "/ml/tokens/", ML_PAGE),
    ("ml-token-revoke", "post", "/ml/tokens/{token_id}/revoke/", only_ml(302)),
    # The API beyond tests/api/test_api.py's matrix (through a browser session here).
    ("api-root", "get", "/api/v1/", api(200, labeler=200, admin=200, norole=200)),
    ("api-queue-list", "get", "/api/v1/queues.json", api(200, labeler=200, admin=200)),
    ("api-export-list", "get", "/api/v1/exports/", api(200)),
    ("api-export-list", "post", "/api/v1/exports/", api(400)),
    ("api-export-detail", "get", "/api/v1/exports/{snapshot_id}/", api(200)),
    ("api-export-download", "get", "/api/v1/exports/{snapshot_id}/download/", api(409)),
    ("api-schema", "get", "/api/schema/", api(200, labeler=200, admin=200, norole=200)),
    ("api-docs", "get", "/api/docs/", api(200, labeler=200, admin=200, norole=200)),
    # Django's own admin: staff only, and none of the roles is staff.
    ("admin:*", "get", "/django-admin/", (302,) * 5),
]


def _url_names(patterns, namespace: str = "") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= _url_names(pattern.url_patterns, pattern.namespace or namespace)
        elif namespace:
            names.add(f"{namespace}:*")  # a namespaced app (Django's admin) is one entry
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"The URL {pattern.pattern} has no name: name it and add it to MATRIX"
            names.add(pattern.name)
    return names


def _api_matrix_names() -> set[str]:
    # Any id resolves: only the URL's name is wanted.
    return {resolve("/api/v1" + path.format_map(_AnyId())).url_name for _, path, *_ in API_MATRIX}


class _AnyId(dict):
    def __missing__(self, key):
        return 1


def test_no_url_is_forgotten():
    known = {name for name, *_ in MATRIX} | _api_matrix_names()
    every = _url_names(get_resolver().url_patterns)
    assert every - known == set(), "URLs with no entry in the permission matrix (tests/security/test_permissions.py)"
    assert known - every == set(), "Matrix entries for URLs that no longer exist"


@pytest.mark.parametrize(("name", "method", "path", "expected"), MATRIX, ids=[f"{m} {n}" for n, m, *_ in MATRIX])
def test_permission_matrix(world, name, method, path, expected):
    client = Client()
    url = path.format(**world)
    # The API takes JSON only; the pages take forms.
    body = {"data": "{}", "content_type": "application/json"} if method == "post" and name.startswith("api-") else {}
    for who, status in zip(WHO, expected, strict=True):
        sign_in(client, world["users"].get(who))
        response = getattr(client, method)(url, **body)
        if status == LOGIN:
            assert response.status_code == 302, (who, response.status_code)
            assert response.url.startswith("/login/"), (who, response.url)
        else:
            assert response.status_code == status, (who, response.status_code, response.content[:200])


# Object level: ids are guessable, so each one is checked against the signed-in labeler ---------------


def test_a_labeler_cannot_open_submit_or_skip_another_labelers_assignment(client, world):
    intruder = world["users"]["labeler"]
    theirs = lease_next_task(labeler=make_user("lab3", "labeler"), queue=world["queue"], kind=TaskKind.RANKING)
    answer_ids = list(theirs.answer_order)
    client.force_login(intruder)
    base = f"/tasks/{theirs.pk}/"
    assert client.get(base).status_code == 404
    groups = json.dumps([[pk] for pk in answer_ids])
    assert client.post(base + "submit/", {"groups": groups, "time_spent_ms": 1000}).status_code == 404
    assert client.post(base + "skip/", {"reason": "unclear"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Assignment.Status.LEASED and not Ranking.objects.filter(assignment=theirs).exists()
    # Their own task still works: the 404 is about whose assignment it is, not the URL.
    assert client.get(f"/tasks/{world['assignment_id']}/").status_code == 200


def test_a_labeler_cannot_read_other_labelers_rankings_demonstrations_or_exports(client, world):
    client.force_login(world["users"]["labeler"])
    for path in [f"/api/v1/rankings/{world['ranking_id']}/", f"/api/v1/demonstrations/{world['demonstration_id']}/"]:
        assert client.get(path).status_code == 404, path
    for path in ["/api/v1/rankings/", "/api/v1/demonstrations/"]:
        assert client.get(path).json()["results"] == [], path  # lab1 has submitted nothing
    for path in ["/ml/exports/", f"/ml/exports/{world['snapshot_id']}/", "/api/v1/exports/",
                 f"/manage/queues/{world['queue_id']}/review/{world['prompt_id']}/",
                 f"/manage/queues/{world['queue_id']}/agreement.csv"]:  # fmt: skip
        assert client.get(path).status_code == 403, path


def test_an_ml_user_cannot_revoke_another_users_token(client, world):
    from core.models import ApiToken
    from core.tokens import issue_token

    other_ml = world["users"]["ml"]
    token, _ = issue_token(user=world["users"]["admin"], name="admin's")
    client.force_login(other_ml)
    assert client.post(f"/ml/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert ApiToken.objects.filter(pk=token.pk).exists() and token.revoked_at is None
