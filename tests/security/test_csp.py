"""The Content-Security-Policy: on every page of every role, strict (scripts and styles from this site only,
no plugins, no framing, forms to this site), with a fresh nonce per request that the only inline script carries,
and nothing in the markup that the policy would block (style attributes, event handlers, unmarked scripts).
tests/browser/test_csp_pages.py checks the same pages in Chromium."""
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from core.text import render_markdown
from tests.security.conftest import sign_in
from tests.security.test_csrf import GET_PAGES

pytestmark = pytest.mark.django_db

REQUIRED = {
    "default-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "frame-ancestors": {"'none'"},
    "form-action": {"'self'"},
    "style-src": {"'self'"},
}


def directives(header: str) -> dict[str, set[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *sources = part.split()
        parsed[name] = set(sources)
    return parsed


class _Blocked(HTMLParser):
    """What the policy would block, or needs the nonce for: inline scripts and <style> elements (with the nonce
    they carry), style attributes, event-handler attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.inline: list[tuple[str, str | None]] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        # json_script's data blocks are not run, so the policy does not govern them.
        if (tag == "script" and "src" not in attrs and attrs.get("type") != "application/json") or tag == "style":
            self.inline.append((tag, attrs.get("nonce")))
        self.attributes += [f"<{tag} {name}>" for name in attrs if name == "style" or name.startswith("on")]


def test_every_page_sends_the_policy_and_nothing_inline_goes_without_the_nonce(world):
    client, pages, nonced = Client(), 0, 0
    for name, path, who in GET_PAGES:
        sign_in(client, world["users"].get(who))
        response = client.get(path.format(**world))
        policy = directives(response.headers.get("Content-Security-Policy", ""))
        for directive, sources in REQUIRED.items():
            assert policy.get(directive) == sources, f"{name} as {who}: {directive} {policy.get(directive)}"
        nonce = {source for source in policy["script-src"] if source.startswith("'nonce-")}
        assert policy["script-src"] - nonce == {"'self'"}, f"{name}: {policy['script-src']}"
        if not response["Content-Type"].startswith("text/html"):
            continue  # the API's JSON carries it too, harmlessly
        pages += 1
        blocked = _Blocked()
        blocked.feed(response.content.decode())
        assert blocked.attributes == [], f"{name} as {who}"
        for tag, carried in blocked.inline:
            assert tag == "script" and nonce == {f"'nonce-{carried}'"}, f"{name} as {who}: <{tag} nonce={carried}>"
            nonced += 1
    assert pages > 20 and nonced >= 1  # every role's pages; /api/docs/ starts Swagger UI with the nonce


def test_the_nonce_is_fresh_for_every_request_and_is_the_one_on_the_inline_script(client, world):
    client.force_login(world["users"]["ml"])
    seen = set()
    for _ in range(2):
        response = client.get("/api/docs/")
        [nonce] = re.findall(r"'nonce-([^']+)'", response["Content-Security-Policy"])
        assert re.findall(r'<script nonce="([^"]+)">', response.content.decode()) == [nonce]
        assert len(nonce) >= 22  # 16 random bytes
        seen.add(nonce)
    assert len(seen) == 2
    # Swagger UI's page alone may load data: images (its icons); others may not.
    assert "img-src 'self' data:" in response["Content-Security-Policy"]
    assert "img-src 'self';" in client.get("/ml/exports/")["Content-Security-Policy"] + ";"


def test_markdown_table_alignment_is_a_class_not_a_style_attribute():
    html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    assert 'style="' not in html
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">3</td>' in html
