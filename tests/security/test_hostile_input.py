"""Input no form or script would send (JSON nested thousands deep, numbers no column holds, edited cursors,
rankings of any shape) answers 400 with a message, or 403/404 where the user may not look: never a 500."""
import base64
import json
import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.html import escape

from labeling.assignment.services import lease_next_task
from labeling.models import Assignment, Ranking, TaskKind
from rewardtrain.models import PairDataset
from tests.conftest import make_user

from .conftest import labeled_place

pytestmark = pytest.mark.django_db

HUGE = "9" * 23  # beyond bigint
DEEP = "[" * 2000 + "]" * 2000  # beyond Python's recursion limit
NESTED_100 = "[" * 100 + "]" * 100  # within it, beyond ours
TOO_DEEP = "nested deeper than 64 levels"


@pytest.fixture
def place(db) -> dict:
    """A user per role (and one with none), a labeled queue, and one of each ML object."""
    users = {
        "norole": make_user("norole"),
        "labeler": make_user("lab1", "labeler"),
        "admin": make_user("boss", "admin"),
        "ml": make_user("mlstaff", "ml"),
    }
    return labeled_place(users, name="Place", answers=3)


def as_user(user, **client_options) -> Client:
    client = Client(**client_options)
    if user is not None:
        client.force_login(user)
    return client


# (method, path, who may send it): every API endpoint that reads a body.
BODIES = [
    ("post", "/api/v1/queues/", "admin"),
    ("patch", "/api/v1/queues/{queue}/", "admin"),
    ("post", "/api/v1/queues/{queue}/prompts/", "ml"),
    ("post", "/api/v1/pair-datasets/", "ml"),
    ("post", "/api/v1/runs/", "ml"),
    ("post", "/api/v1/exports/", "ml"),
    ("post", "/api/v1/reward-models/{model}/score/", "ml"),
]


def _url(path: str, place: dict) -> str:
    return path.format(queue=place["queue"].pk, model=place["model"].pk)


@pytest.mark.parametrize(("method", "path", "who"), BODIES)
@pytest.mark.parametrize("body", [DEEP, NESTED_100, '{"a": ' * 1500 + "1" + "}" * 1500], ids=["list", "100", "object"])
def test_deeply_nested_json_gets_a_400_that_says_so(place, method, path, who, body):
    response = getattr(as_user(place["users"][who]), method)(_url(path, place), body, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json() == {"detail": f"JSON parse error - {TOO_DEEP}"}


def test_nesting_up_to_the_limit_is_read():
    from core import jsonlimits

    assert jsonlimits.loads("[" * 64 + "]" * 64) is not None
    assert jsonlimits.loads(json.dumps({"meta": {"a": [[{"b": 1}]]}})) == {"meta": {"a": [[{"b": 1}]]}}
    with pytest.raises(jsonlimits.JSONInputError, match=TOO_DEEP):
        jsonlimits.loads("[" * 65 + "]" * 65)


@pytest.mark.parametrize(("method", "path", "who"), BODIES)
@pytest.mark.parametrize("role", ["norole", "labeler"])
def test_a_user_without_the_role_gets_403_before_the_body_is_read(place, method, path, who, role):
    """A browser session's CSRF check parsed the body first: the deep body answered 500 to anyone signed in."""
    csrf = "c" * 32
    for user, expected in [(place["users"][role], 403), (place["users"][who], 400)]:
        client = as_user(user, enforce_csrf_checks=True)
        client.cookies[settings.CSRF_COOKIE_NAME] = csrf
        response = getattr(client, method)(_url(path, place), DEEP, content_type="application/json",
                                           HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
        assert response.status_code == expected, (user.username, response.content[:200])
        if expected == 403:
            assert "role" in response.json()["detail"]


def test_the_csrf_check_still_refuses_a_session_post_without_the_token(place):
    client = as_user(place["users"]["ml"], enforce_csrf_checks=True)
    response = client.post(f"/api/v1/runs/{place['run'].pk}/cancel/", DEEP, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/api/v1/pair-datasets/", '{"name": "d", "queues": [QUEUE], "seed": ' + HUGE + "}", "seed",
         "Ensure this value is less than or equal to 2147483647."),
        ("/api/v1/pair-datasets/", '{"name": "d", "queues": [QUEUE], "seed": -' + HUGE + "}", "seed",
         "Ensure this value is greater than or equal to -2147483648."),
        ("/api/v1/runs/", '{"dataset": DATASET, "base_model": "tiny", "seed": ' + HUGE + "}", "seed", "Ensure"),
        ("/api/v1/runs/", '{"dataset": ' + HUGE + ', "base_model": "tiny"}', "dataset", "Invalid pk"),
        ("/api/v1/pair-datasets/", '{"name": "d", "queues": [QUEUE], "filters": {"min_agreement": 1e400}}',
         "detail", "JSON parse error - the number 1e400 is too large"),
        ("/api/v1/queues/QUEUE/prompts/", '{"prompts": [{"prompt": "p", "answers": ["a"], "meta": {"x": -1e999}}]}',
         "detail", "JSON parse error - the number -1e999 is too large"),
        ("/api/v1/runs/", '{"dataset": DATASET, "learning_rate": NaN}', "detail",
         "JSON parse error - NaN is not allowed"),
        ("/api/v1/runs/", '{"dataset": 1' + "0" * 5000 + "}", "detail",
         "JSON parse error - a number has more than 4,300 digits"),
        # Found by tests/security/test_fuzz.py: the 400 echoed the lone surrogate and could not be encoded (500).
        ("/api/v1/exports/", '{"name": "e", "dataset": "\\ud800", "format": "jsonl", "queues": [QUEUE]}', "detail",
         "JSON parse error - a string holds a lone UTF-16 surrogate"),
        ("/api/v1/policies/", '{"source": "x", "name": "\\uDFFF"}', "detail",
         "JSON parse error - a string holds a lone UTF-16 surrogate"),
    ],
)  # fmt: skip
def test_numbers_that_no_column_holds_are_refused_by_name(place, path, body, field, message):
    body = body.replace("QUEUE", str(place["queue"].pk)).replace("DATASET", str(place["dataset"].pk))
    path = path.replace("QUEUE", str(place["queue"].pk))
    response = as_user(place["users"]["ml"]).post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    answer = response.json()[field]
    assert (answer if field == "detail" else answer[0]).startswith(message), answer


@pytest.mark.parametrize("seed", [HUGE, "-" + HUGE, str(2**31)])
def test_the_dataset_page_refuses_a_seed_no_column_holds(place, seed):
    form = {"name": "d", "queues": [place["queue"].pk], "seed": seed, "validation_fraction": "0.1"}
    response = as_user(place["users"]["ml"]).post("/ml/datasets/", form)
    assert response.status_code == 200 and "seed" in response.context["form"].errors
    assert PairDataset.objects.count() == 1  # the place's own


# Filters ------------------------------------------------------------------------------------------

# (list, filter): every filter that takes an id.
ID_FILTERS = [
    ("demonstrations", "queue"), ("demonstrations", "prompt"), ("demonstrations", "labeler"),
    ("rankings", "queue"), ("rankings", "prompt"), ("rankings", "labeler"),
    ("pair-datasets", "queue"), ("prompts", "queue"), ("runs", "dataset"), ("reward-models", "run"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "name"), ID_FILTERS)
@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, "1e30", "9" * 5000], ids=["huge", "negative", "float", "5000"])
def test_an_id_beyond_bigint_in_a_filter_is_a_400_naming_it(place, endpoint, name, value):
    """Such ids failed on the database (bigint overflow, or OverflowError on SQLite) instead of finding nothing."""
    if name == "labeler" and value in ("-" + HUGE, "1e30"):
        value = HUGE  # not digits: a username, which finds nobody (below)
    response = as_user(place["users"]["ml"]).get(f"/api/v1/{endpoint}/", {name: value})
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == [name]


@pytest.mark.parametrize("value", ["²", "-1", "1e3", "ana"])
def test_a_labeler_filter_that_is_not_in_ascii_digits_is_a_username(place, value):
    for endpoint in ("demonstrations", "rankings"):
        response = as_user(place["users"]["ml"]).get(f"/api/v1/{endpoint}/", {"labeler": value})
        assert response.status_code == 200 and response.json()["results"] == []


def test_the_largest_id_is_taken_and_finds_nothing(place):
    for endpoint, name in ID_FILTERS:
        response = as_user(place["users"]["ml"]).get(f"/api/v1/{endpoint}/", {name: str(2**63 - 1)})
        assert response.status_code in (200, 400), (endpoint, name)  # a model filter says "not a valid choice"
        assert response.status_code == 400 or response.json()["results"] == [], (endpoint, name)


def test_every_api_filter_set_refuses_ids_beyond_bigint():
    """FilterBackend refuses a filter set that does not build on core.api.FilterSet."""
    from annotate.api_urls import router
    from core.api import FilterBackend, FilterSet

    for _, viewset, _ in router.registry:
        view = viewset()
        model = viewset.serializer_class.Meta.model
        filterset_class = FilterBackend().get_filterset_class(view, model.objects.none())
        assert filterset_class is None or issubclass(filterset_class, FilterSet), viewset


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": _cursor("p=abc")},
        {"cursor": _cursor("o=x")},
        {"cursor": _cursor("r=" + "9" * 5000)},
        {"cursor": _cursor("p=" + HUGE)},
        {"cursor": _cursor("p=abc"), "ordering": "created_at"},
        {"cursor": _cursor("p=1&o=" + "1" * 5000)},
        {"cursor": "not base64!"},
        {"cursor": "//79"},  # not ASCII once decoded
    ],
)
@pytest.mark.parametrize("endpoint", ["prompts", "rankings", "runs"])
def test_an_edited_cursor_is_a_400(place, endpoint, query):
    response = as_user(place["users"]["admin" if endpoint != "runs" else "ml"]).get(f"/api/v1/{endpoint}/", query)
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {"cursor": ["Invalid cursor."]}


def test_the_cursors_the_api_hands_out_still_work(place):
    client = as_user(place["users"]["admin"])
    for ordering in ("id", "-id", "created_at", "-created_at"):
        first = client.get("/api/v1/prompts/", {"page_size": 1, "ordering": ordering}).json()
        second = client.get(first["next"])
        assert second.status_code == 200 and second.json()["results"] != first["results"], ordering


# URLs ---------------------------------------------------------------------------------------------


def _urls_with_ids(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _urls_with_ids(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and "<int:" in route:
            yield "/" + re.sub(r"<int:\w+>", HUGE, route)


def _api_urls_with_ids():
    from annotate.api_urls import router

    for prefix, viewset, _ in router.registry:
        yield f"/api/v1/{prefix}/{HUGE}/"
        for action in viewset.get_extra_actions():
            if action.detail:
                yield f"/api/v1/{prefix}/{HUGE}/{action.url_path}/"


def test_an_id_beyond_bigint_in_any_url_is_a_404_or_refused(place):
    urls = sorted({*_urls_with_ids(get_resolver().url_patterns), *_api_urls_with_ids()})
    assert len(urls) >= 35  # every page and API object URL with an id
    for who in ("norole", "labeler", "admin", "ml"):
        client = as_user(place["users"][who])
        for url in urls:
            for method in ("get", "post"):
                status = getattr(client, method)(url).status_code
                assert status in (302, 400, 403, 404, 405), (who, method, url, status)
    client = as_user(place["users"]["ml"])
    assert [client.get(f"/api/v1/{name}/{HUGE}/").status_code for name in ("runs", "prompts", "queues")] == [404] * 3
    assert as_user(place["users"]["labeler"]).get(f"/tasks/{HUGE}/").status_code == 404


# The ranking submit -------------------------------------------------------------------------------


@pytest.fixture
def leased(place) -> Assignment:
    labeler = make_user("lab2", "labeler")
    return lease_next_task(labeler=labeler, queue=place["queue"], kind=TaskKind.RANKING)


@pytest.mark.parametrize(
    "groups",
    [
        "[" * 100_000,
        NESTED_100,
        "[[" + "9" * 5000 + "]]",  # beyond int()'s 4,300 digits
        "[[" + "9" * 4000 + "]]",
        '[["' + "9" * 5000 + '"]]',
        "[[" + HUGE + "]]",
        "[[-" + HUGE + "]]",
        "[[1e400]]",
        "[[NaN]]",
        "[[1.5]]",
        "[[null]]",
        '[["\\u0000"]]',
        '[["\\ud800"]]',
        "[[[[[[[[1]]]]]]]]",
        '{"groups": [[1]]}',
        '"[[1]]"',
        "true",
        "[1, 2]",
        "[[]]",
    ],
)
def test_any_ranking_text_is_refused_with_a_message_and_the_work_kept(leased, groups):
    client = as_user(leased.labeler)
    a = leased.answer_order[0]
    response = client.post(f"/tasks/{leased.pk}/submit/", {"groups": groups, f"rating-{a}": "5"})
    assert response.status_code == 400
    error = response.context["error"]
    assert error and len(error) < 200, error
    assert escape(error) in response.content.decode()
    assert response.context["initial_groups"] == groups and response.context["initial_ratings"] == {a: "5"}
    leased.refresh_from_db()
    assert leased.status == Assignment.Status.LEASED and not Ranking.objects.filter(assignment=leased).exists()


@pytest.mark.parametrize("rating", ["9" * 5000, HUGE, "-1", "8", "²"])
def test_any_rating_text_is_refused_with_a_message(leased, rating):
    groups = json.dumps([[pk] for pk in leased.answer_order])
    response = as_user(leased.labeler).post(
        f"/tasks/{leased.pk}/submit/", {"groups": groups, f"rating-{leased.answer_order[0]}": rating}
    )
    assert response.status_code == 400 and "Ratings go from 1 to 7" in response.context["error"]
