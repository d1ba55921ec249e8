"""CSRF: every POST page refuses a request without the token and changes nothing; every form carries
the token; the API needs it with a browser session, not with a token (no cookies, nothing to forge)."""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client

from core.tokens import issue_token
from rewardtrain.models import TrainingRun
from tests.security.conftest import sign_in
from tests.security.test_permissions import MATRIX, WHO

pytestmark = pytest.mark.django_db

ALLOWED = {200, 302, 400, 404}  # past the permission check


def _first_allowed(expected) -> str:
    return next(who for who, status in zip(WHO, expected, strict=True) if status in ALLOWED)


POST_PAGES = [(name, path, _first_allowed(expected)) for name, method, path, expected in MATRIX
              if method == "post" and not name.startswith("api-")]  # fmt: skip
GET_PAGES = [(name, path, who) for name, method, path, expected in MATRIX if method == "get"
             for who, status in zip(WHO, expected, strict=True) if status == 200]  # fmt: skip


def html_pages(world):
    """(name, who, html) of every HTML page each role may open, signed in as that role."""
    client = Client()
    for name, path, who in GET_PAGES:
        sign_in(client, world["users"].get(who))
        response = client.get(path.format(**world))
        if response["Content-Type"].startswith("text/html"):
            yield name, who, response.content.decode()


def database_state() -> dict:
    """Every row of every table, to show that a refused request changed nothing."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in apps.get_models()}


@pytest.mark.parametrize(("name", "path", "who"), POST_PAGES, ids=[name for name, *_ in POST_PAGES])
def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(world, name, path, who):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, world["users"].get(who))
    before = database_state()
    response = client.post(path.format(**world), {"text": "x", "name": "x", "reason": "unclear", "action": "exclude",
                                                  "prompt": world["prompt_id"]})  # fmt: skip
    assert response.status_code == 403, (who, response.status_code)
    assert "CSRF verification failed" in response.content.decode()
    assert database_state() == before


def test_the_same_post_with_the_token_goes_through(world):
    """The control for the test above: the 403 is about the token, not the request."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["admin"])
    client.get(f"/manage/queues/{world['queue_id']}/")  # the page with the form sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(f"/manage/queues/{world['queue_id']}/toggle/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    world["queue"].refresh_from_db()
    assert not world["queue"].is_open


class _PostForms(HTMLParser):
    """(action, has a csrfmiddlewaretoken input) for each method=post form."""

    def __init__(self):
        super().__init__()
        self.forms: list[list] = []
        self._open: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self._open = [attrs.get("action", ""), False]
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attrs.get("name") == "csrfmiddlewaretoken":
            self._open[1] = bool(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def test_every_post_form_on_every_page_carries_the_csrf_token(world):
    checked = 0
    for name, who, html in html_pages(world):
        parser = _PostForms()
        parser.feed(html)
        missing = [action for action, has_token in parser.forms if not has_token]
        assert missing == [], f"{name} as {who}: forms without the token: {missing}"
        checked += len(parser.forms)
    assert checked >= 15  # the walk did reach the pages with forms


def test_every_template_with_a_post_form_has_the_csrf_token_tag():
    for template in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        text = template.read_text()
        forms = len(re.findall(r"<form[^>]*method=[\"']?post", text, flags=re.I))
        assert text.count("{% csrf_token %}") >= forms, template


# The API ------------------------------------------------------------------------------------------


def test_a_session_authenticated_api_post_needs_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["ml"])
    url = f"/api/v1/runs/{world['run_id']}/cancel/"
    response = client.post(url, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert TrainingRun.objects.get(pk=world["run_id"]).status == "queued"

    client.get("/ml/tokens/")  # a page with a form sets the cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(url, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert TrainingRun.objects.get(pk=world["run_id"]).status == "cancelled"


def test_token_authenticated_api_posts_need_no_csrf_token(world):
    # A token is sent by a script in a header a browser never adds by itself: nothing to forge.
    _, key = issue_token(user=world["users"]["ml"], name="script")
    client = Client(enforce_csrf_checks=True)
    response = client.post(f"/api/v1/runs/{world['run_id']}/cancel/", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {key}")  # fmt: skip
    assert response.status_code == 200
    assert TrainingRun.objects.get(pk=world["run_id"]).status == "cancelled"

