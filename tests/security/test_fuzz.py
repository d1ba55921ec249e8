"""Property tests: whatever a client sends (JSON of any shape and depth, numbers of any size, text with NUL,
lone surrogates or bytes that are not UTF-8), as any role, the answer is never a 5xx.

Random JSON at the ranking submit and at every API endpoint that reads a body, random query strings (each
list's own filter names, and others) at every API list. Each example runs in a savepoint that is rolled
back, so that one example's writes never change the next. Bounded and derandomized: the same examples on
every run, in seconds.
"""
import base64
import json
import re
from datetime import UTC
from urllib.parse import quote, quote_from_bytes

import pytest
from django.db import transaction
from django.test import Client
from django_filters.rest_framework import DjangoFilterBackend
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from annotate.api_urls import router
from labeling.assignment.services import lease_next_task
from labeling.models import Assignment, TaskKind
from tests.conftest import make_user

from .conftest import labeled_place

pytestmark = pytest.mark.django_db

FAST = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROLES = ["anonymous", "norole", "labeler", "admin", "ml"]

# --- what is thrown ---------------------------------------------------------------------------------

any_char = st.characters(exclude_categories=())  # lone surrogates too: JSON can carry them (\ud800)
# Form fields and query strings are bytes: they carry no lone surrogate (the test client could not send one).
odd_texts = st.sampled_from(["", " ", "\x00", "²", "٣", "\u202e", "9" * 5000, "-0", "1e400", "NaN"])
texts = st.one_of(st.text(max_size=20), st.text(any_char, max_size=10), odd_texts, st.sampled_from(["\ud800"]))
huge_ints = st.one_of(
    st.integers(min_value=2**31 - 2, max_value=10**30),
    st.integers(min_value=-(10**30), max_value=-(2**31) + 2),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**4000]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=2000), huge_ints,
    st.floats(allow_nan=False, allow_infinity=False), texts,
)  # fmt: skip


def json_values(keys=None):
    keys = keys if keys is not None else st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )


def _nested(depth: int, kind: str) -> str:
    return {"list": "[" * depth + "]" * depth, "object": '{"a":' * depth + "1" + "}" * depth,
            "open": "[" * depth}[kind]  # fmt: skip


deep_texts = st.builds(_nested, st.integers(min_value=60, max_value=3000), st.sampled_from(["list", "object", "open"]))
raw_numbers = st.sampled_from(
    ["[[" + "9" * 5000 + "]]", "[[1e400]]", "[[NaN]]", "[[-Infinity]]", "[[1" + "0" * 30 + "]]"]
)


def dumps(value) -> str:
    return json.dumps(value)  # ASCII: a lone surrogate travels as \\ud800, as a browser's JSON.stringify sends it


# --- the place ------------------------------------------------------------------------------------------


@pytest.fixture
def place(db) -> dict:
    """A signed-in client per role (and the roles that may read each API list), a labeled queue, one of each ML
    object, and a leased ranking task."""
    users = {role: make_user(role, *([role] if role in ("labeler", "admin", "ml") else [])) for role in ROLES[1:]}
    built = labeled_place(users, name="Fuzz", answers=4)
    queue = built["queue"]
    clients = {"anonymous": Client()}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    ranker = make_user("ranker", "labeler")
    leased = lease_next_task(labeler=ranker, queue=queue, kind=TaskKind.RANKING)
    ranker_client = Client()
    ranker_client.force_login(ranker)
    readers = {prefix: [role for role in ROLES if clients[role].get(f"/api/v1/{prefix}/").status_code == 200]
               for prefix, _, _ in router.registry}  # fmt: skip
    return built | {"clients": clients, "leased": leased, "ranker": ranker_client, "readers": readers}


def rolled_back(send):
    """The response to `send()`, with whatever the request wrote undone."""
    with transaction.atomic():
        response = send()
        transaction.set_rollback(True)
    return response


# --- the ranking submit ---------------------------------------------------------------------------------


@settings(FAST, max_examples=120)
@given(data=st.data())
@example(data=None)  # the cases the issue names, below
def test_the_ranking_submit_answers_any_groups_with_the_page_or_the_next_task(place, data):
    leased: Assignment = place["leased"]
    ids = list(leased.answer_order)
    if data is None:
        cases = ["[" * 100_000, "[[" + "9" * 5000 + "]]", json.dumps([[str(10**4000)]]), '{"a": [[1]]}']
        forms = [{"groups": groups} for groups in cases]
    else:
        ranked = st.lists(st.lists(st.one_of(st.sampled_from(ids), st.sampled_from(ids).map(str), scalars),
                                   max_size=4), max_size=5)  # fmt: skip
        valid = st.permutations(ids).map(lambda order: [[pk] for pk in order])
        groups = data.draw(st.one_of(valid.map(dumps), ranked.map(dumps), json_values().map(dumps), deep_texts,
                                     raw_numbers, st.text(max_size=30)), label="groups")  # fmt: skip
        ratings = data.draw(st.dictionaries(st.sampled_from(ids), st.one_of(st.text(max_size=6), odd_texts),
                                            max_size=2), label="ratings")  # fmt: skip
        flags = data.draw(st.dictionaries(st.sampled_from(ids), st.lists(st.text(max_size=12), max_size=2),
                                          max_size=2), label="flags")  # fmt: skip
        forms = [{"groups": groups, **{f"rating-{pk}": v for pk, v in ratings.items()},
                  **{f"flag-{pk}": v for pk, v in flags.items()}}]  # fmt: skip
    for form in forms:
        response = rolled_back(lambda form=form: place["ranker"].post(f"/tasks/{leased.pk}/submit/", form))
        assert response.status_code in (302, 400), response.status_code
        if response.status_code == 400:
            # The labeler's page, with a short message, and their work as they sent it.
            assert 0 < len(response.context["error"]) < 200, response.context["error"]
            assert response.context["initial_groups"] == form["groups"]


# --- the API's lists ------------------------------------------------------------------------------------

LISTS = {prefix: viewset for prefix, viewset, _ in router.registry}


def filter_names(viewset) -> list[str]:
    model = viewset.serializer_class.Meta.model
    filterset = DjangoFilterBackend().get_filterset_class(viewset(), model.objects.none())
    return sorted(filterset.base_filters) if filterset else []


ID_FILTERS = {"queue", "prompt", "labeler", "dataset", "run"}


def _cursor(parts: list[tuple[str, str]]) -> str:
    return base64.b64encode("&".join(f"{key}={value}" for key, value in parts).encode()).decode()


# A cursor is base64 of "p=<position>&o=<offset>&r=<reverse>": the parts with values of any kind.
cursor_values = st.one_of(st.integers(min_value=0, max_value=100).map(str), st.text(max_size=8), odd_texts,
                          huge_ints.map(str), st.datetimes(timezones=st.just(UTC)).map(str))  # fmt: skip
cursors = st.lists(st.tuples(st.sampled_from(["p", "o", "r"]), cursor_values), min_size=1, max_size=3).map(_cursor)
ids = st.one_of(st.integers(min_value=0, max_value=50).map(str), huge_ints.map(str), odd_texts)
query_values = st.one_of(
    st.integers().map(str), huge_ints.map(str), st.floats().map(repr), st.text(max_size=12), odd_texts, cursors,
    st.sampled_from(["true", "false", "id", "-created_at", "2026-11-30", "99999-01-01", "-1", "ana"]),
)


def _encoded(value) -> str:
    return quote_from_bytes(value) if isinstance(value, bytes) else quote(value.encode("utf-8", "surrogatepass"))


@settings(FAST, max_examples=200)
@given(data=st.data())
def test_every_api_list_answers_any_query_without_a_server_error(place, data):
    prefix = data.draw(st.sampled_from(sorted(LISTS)), label="list")
    role = data.draw(st.sampled_from(ROLES), label="role")
    names = st.sampled_from([*filter_names(LISTS[prefix]), "cursor", "ordering", "page_size"])
    pairs = data.draw(st.lists(st.tuples(st.one_of(names, st.text(max_size=6)),
                                         st.one_of(query_values, st.binary(max_size=8))), max_size=4),
                      label="query")  # fmt: skip
    query = "&".join(f"{_encoded(key)}={_encoded(value)}" for key, value in pairs)
    response = rolled_back(lambda: place["clients"][role].get(f"/api/v1/{prefix}/?{query}"))
    assert response.status_code < 500, (response.status_code, query[:300])


@settings(FAST, max_examples=150)
@given(data=st.data())
def test_an_id_filter_of_any_value_finds_or_is_a_400_naming_it(place, data):
    prefix, name = data.draw(st.sampled_from(sorted(
        (prefix, name) for prefix, viewset in LISTS.items() for name in filter_names(viewset) if name in ID_FILTERS
    )), label="filter")  # fmt: skip
    role = data.draw(st.sampled_from(place["readers"][prefix]), label="role")
    value = data.draw(ids, label="value")
    response = rolled_back(lambda: place["clients"][role].get(f"/api/v1/{prefix}/?{name}={_encoded(value)}"))
    assert response.status_code in (200, 400), (response.status_code, value[:100])
    assert response.status_code == 200 or list(response.json()) == [name]
    if beyond_bigint(value) and not (name == "labeler" and value.startswith("-")):  # "-1" is a username
        assert response.status_code == 400, value[:100]


def beyond_bigint(text: str) -> bool:
    """Whether `text` is a whole number in ASCII digits that no bigint column holds."""
    number = re.fullmatch(r"(-?)0*([0-9]+)", text)
    if number is None:
        return False
    sign, digits = number.groups()
    return len(digits) > 19 or not -(2**63) <= int(sign + digits) <= 2**63 - 1


@settings(FAST, max_examples=150)
@given(data=st.data())
def test_a_cursor_of_any_content_gives_a_page_or_a_400(place, data):
    prefix = data.draw(st.sampled_from(sorted(LISTS)), label="list")
    role = data.draw(st.sampled_from(place["readers"][prefix]), label="role")
    ordering = data.draw(st.sampled_from(["", "id", "-id", "created_at", "-created_at"]), label="ordering")
    cursor = data.draw(cursors | st.text(max_size=12), label="cursor")
    url = f"/api/v1/{prefix}/?ordering={ordering}&cursor={_encoded(cursor)}"
    response = rolled_back(lambda: place["clients"][role].get(url))
    assert response.status_code in (200, 400), (response.status_code, cursor)
    assert response.status_code == 200 or response.json() == {"cursor": ["Invalid cursor."]}


# --- the API's bodies -----------------------------------------------------------------------------------

FIELDS = [
    "name", "instructions", "task_kind", "ranking_overlap", "demonstration_overlap", "priority", "lease_seconds",
    "is_open", "gold_rate", "gold_threshold", "prompts", "prompt", "answers", "id", "meta", "text", "model",
    "queues", "filters", "validation_fraction", "seed", "dataset", "base_model", "max_length", "learning_rate",
    "epochs", "prompts_per_batch", "use_margin", "format", "date_from", "labeler_ids", "source", "min_rankings",
    "min_agreement", "min_gold_accuracy", "exclude_flagged",
]  # fmt: skip


def near(valid: dict, values) -> st.SearchStrategy:
    """`valid` (a body the endpoint takes) with up to two of its fields, or other fields, set to random values:
    so that random values get past the first check and reach the deeper ones."""
    keys = st.sampled_from(sorted(valid)) | st.sampled_from(FIELDS)
    return st.dictionaries(keys, values, max_size=2).map(lambda changes: {**valid, **changes})


def endpoints(place: dict) -> dict:
    """(method, URL) -> (the role that may use it, bodies near a valid one)."""
    queue, dataset, model = place["queue"].pk, place["dataset"].pk, place["model"].pk
    values = json_values(st.sampled_from(FIELDS) | st.text(max_size=6))
    row = near({"prompt": "p", "answers": ["a", "b"], "id": "x", "meta": {}, "priority": 0}, values)
    new_queue = {"name": "n", "instructions": "i", "task_kind": "ranking"}
    return {
        ("post", "/api/v1/queues/"): ("admin", near(new_queue, values)),
        ("patch", f"/api/v1/queues/{queue}/"): ("admin", near({"priority": 1}, values)),
        ("post", f"/api/v1/queues/{queue}/prompts/"): ("ml", st.lists(row, min_size=1, max_size=2).map(
            lambda rows: {"prompts": rows})),
        ("post", "/api/v1/pair-datasets/"): ("ml", near({"name": "d", "queues": [queue], "seed": 0, "filters": {}},
                                                        values)),
        ("post", "/api/v1/runs/"): ("ml", near({"dataset": dataset, "base_model": "tiny", "epochs": 1}, values)),
        ("post", "/api/v1/exports/"): ("ml", near({"name": "e", "dataset": "pairs", "format": "jsonl",
                                                  "queues": [queue], "filters": {}}, values)),
        ("post", f"/api/v1/reward-models/{model}/score/"): ("ml", near({"prompt": "p", "answers": ["a"]}, values)),
    }  # fmt: skip


@settings(FAST, max_examples=200)
@given(data=st.data())
def test_every_api_body_is_answered_without_a_server_error(place, data):
    bodies = endpoints(place)
    method, url = data.draw(st.sampled_from(sorted(bodies)), label="endpoint")
    allowed, near_valid = bodies[method, url]
    role = data.draw(st.sampled_from([allowed] * 4 + ROLES), label="role")
    values = json_values(st.sampled_from(FIELDS) | st.text(max_size=6))
    body = data.draw(st.one_of(near_valid.map(dumps), near_valid.map(dumps), values.map(dumps), deep_texts,
                               raw_numbers.map(lambda text: text[1:-1]), st.text(max_size=20)),
                     label="body")  # fmt: skip
    client = place["clients"][role]
    response = rolled_back(lambda: getattr(client, method)(url, body, content_type="application/json"))
    assert response.status_code < 500, (response.status_code, body[:300])
