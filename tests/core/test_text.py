"""core.text: Markdown is rendered once per text, then read from the process's memory or the shared cache; the
plain-text rules the apps share."""
import pytest
from django.core.cache import cache
from django.urls import reverse

import core.text
from tests.conftest import make_user


@pytest.fixture(autouse=True)
def empty_caches(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "md"}}
    cache.clear()
    core.text.render_markdown.cache_clear()
    yield
    core.text.render_markdown.cache_clear()


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    done = []
    real = core.text.markdown_to_html

    def counting(text):
        done.append(text)
        return real(text)

    monkeypatch.setattr(core.text, "markdown_to_html", counting)
    monkeypatch.setattr("labeling.assignment.views.markdown_to_html", counting)  # the live preview's
    return done


def test_a_text_is_rendered_once_and_then_read_from_memory_or_the_shared_cache(renders):
    html = core.text.render_markdown("**Water** the basil <script>x</script>")
    assert "<strong>Water</strong>" in html and "&lt;script&gt;" in html
    assert core.text.render_markdown("**Water** the basil <script>x</script>") == html
    core.text.render_markdown.cache_clear()  # as another web process would start: only the shared cache has it
    assert core.text.render_markdown("**Water** the basil <script>x</script>") == html
    assert renders == ["**Water** the basil <script>x</script>"]
    core.text.render_markdown("Another text")
    assert len(renders) == 2


def test_the_cached_html_is_keyed_on_the_rendering_rules(renders, monkeypatch):
    core.text.render_markdown("# Title")
    core.text.render_markdown.cache_clear()
    monkeypatch.setattr(core.text, "RENDERING", "changed-rules")
    core.text.render_markdown("# Title")
    assert renders == ["# Title", "# Title"]


@pytest.mark.django_db
def test_the_live_preview_renders_without_filling_the_cache(client, renders):
    client.force_login(make_user("lab", "labeler"))
    response = client.post(reverse("markdown-preview"), {"text": "*typed* just now"})
    assert response.content.decode().strip() == "<p><em>typed</em> just now</p>"
    assert renders == ["*typed* just now"]
    assert not any(key for key in cache._cache if "markdown" in key)  # noqa: SLF001 (locmem's store)


def test_a_task_pages_texts_are_read_in_one_round_trip_and_rendered_as_one_by_one(renders, monkeypatch):
    texts = ["**Prompt**", "Answer <b>one</b>", "Answer two", "Answer <b>one</b>"]
    reads = []
    real_get_many = cache.get_many
    monkeypatch.setattr(cache, "get_many", lambda keys: reads.append(keys) or real_get_many(keys))
    many = core.text.render_markdown_many(texts)
    assert many == [core.text.markdown_to_html(text) for text in texts]
    assert "&lt;b&gt;one&lt;/b&gt;" in many[1]  # escaped, as everywhere
    assert renders[:3] == ["**Prompt**", "Answer <b>one</b>", "Answer two"]  # a repeated text: rendered once
    renders.clear()
    assert core.text.render_markdown_many(texts) == many
    assert renders == [] and len(reads) == 2  # the second page: all from the shared cache, one read each
    core.text.render_markdown.cache_clear()
    assert core.text.render_markdown("Answer two") == many[2] and renders == []  # the same cache entries


def test_an_empty_text_renders_to_nothing_from_the_cache_too(renders):
    assert core.text.render_markdown_many(["", "x"]) == ["", "<p>x</p>\n"]
    assert core.text.render_markdown_many(["", "x"]) == ["", "<p>x</p>\n"]  # "" read back from the cache


# Plain text ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, problem",
    [
        ("fine\ntext ²", None),
        ("a\x00b", "contains a NUL character"),
        ("x\ud800", "contains an invalid Unicode escape (a lone surrogate)"),
    ],
)
def test_character_problem_names_what_postgresql_cannot_store(value, problem):
    assert core.text.character_problem(value) == problem


def test_nested_character_problem_reads_keys_values_and_items():
    assert core.text.nested_character_problem({"a": [1, {"b": "ok"}], "c": None}) is None
    assert core.text.nested_character_problem({"a": [1, {"b": "\x00"}]}) == "contains a NUL character"
    assert core.text.nested_character_problem({"\ud800": 1}) == "contains an invalid Unicode escape (a lone surrogate)"


def test_short_text_has_one_lf_per_line_break_and_no_surrounding_space():
    assert core.text.short_text("  one\r\ntwo \n") == "one\ntwo"
    assert core.text.short_text(None) == "" and core.text.short_text(5) == ""
    assert core.text.is_short_plain_text("abc", max_chars=3)
    assert not core.text.is_short_plain_text("abcd", max_chars=3)
    assert not core.text.is_short_plain_text("a\x00", max_chars=3)


def test_text_taken_whatever_it_holds_loses_its_nul_characters():
    assert core.text.without_nul("a\x00b\x00") == "ab"
    assert core.text.normalize_newlines("a\r\nb\rc\n") == "a\nb\rc\n"


def test_the_importer_and_the_upload_form_take_the_same_file_names():
    assert core.text.UPLOAD_SUFFIXES == (".jsonl", ".json-lines", ".ndjson", ".csv")
