"""Hostile text (script tags, event handlers, javascript: links, NUL bytes, spreadsheet formulas) is
stored as given and shown inert, on every page and in every CSV the app writes."""
import csv
import io
import re
from pathlib import Path

import pytest
from django.conf import settings

from core.text import render_markdown
from labeling.models import Demonstration, Queue
from tests.security.conftest import HOSTILE, HOSTILE_USERNAME, injected
from tests.security.test_csrf import html_pages

pytestmark = pytest.mark.django_db


def test_every_page_shows_the_hostile_text_as_text(world):
    shown = 0
    for name, who, html in html_pages(world):
        assert injected(html) == [], f"{name} as {who}"
        shown += "&lt;script&gt;window.__pwned=1" in html
    # The hostile text is there, escaped: on the task, queue, review, import and ML pages at least.
    assert shown >= 10


def test_the_stored_text_is_the_text_as_given(world):
    assert Queue.objects.get(pk=world["queue_id"]).instructions.endswith(HOSTILE)
    assert Demonstration.objects.filter(text="Demo " + HOSTILE).exists()


@pytest.mark.parametrize(
    "markdown",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "<javascript:alert(1)>",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](vbscript:msgbox(1))",
        "![x](javascript:alert(1))",
        '[x](https://example.org "a" onclick="alert(1)")',
        '<a href="javascript:alert(1)" onclick="alert(1)">x</a>',
        "<img src=x onerror=alert(1)>",
        "<svg><script>alert(1)</script></svg>",
        "<iframe src=https://example.org></iframe>",
        "<style>body{display:none}</style>",
        "| a |\n|---|\n| <b onmouseover=alert(1)>x</b> |",
    ],
)
def test_markdown_drops_script_urls_and_event_handlers(markdown):
    html = render_markdown(markdown)
    assert injected(html) == [], html
    assert not re.search(r"<(script|iframe|style|svg|img[^>]*src)", html), html


def test_markdown_keeps_plain_links_safe():
    html = render_markdown("[docs](https://example.org/a?b=1)")
    assert 'href="https://example.org/a?b=1"' in html and 'rel="noopener noreferrer nofollow"' in html


def test_the_markdown_preview_is_inert_and_drops_nul(client, world):
    client.force_login(world["users"]["labeler"])
    response = client.post("/preview/", {"text": HOSTILE + "\x00 end"})
    assert response.status_code == 200 and injected(response.content.decode()) == []
    assert "\x00" not in response.content.decode() and "end" in response.content.decode()


def test_a_demonstration_with_a_nul_byte_is_refused_with_a_clear_error(client, world):
    from labeling.assignment.services import lease_next_task
    from labeling.models import TaskKind

    labeler = world["users"]["labeler"]
    assignment = lease_next_task(labeler=labeler, queue=world["queue"], kind=TaskKind.DEMONSTRATION)
    client.force_login(labeler)
    response = client.post(f"/tasks/{assignment.pk}/submit/", {"text": "fine\x00text", "time_spent_ms": 10})
    assert response.status_code == 400 and "NUL character" in response.content.decode()
    assert not Demonstration.objects.filter(assignment=assignment).exists()
    # What was typed comes back in the editor, so nothing is lost.
    assert "fine" in response.content.decode()


def test_a_very_long_line_is_stored_whole_and_shown(client, world):
    prompt = world["queue"].prompts.first()
    prompt.text = "x" * settings.MAX_TEXT_CHARS
    prompt.save(update_fields=["text"])
    client.force_login(world["users"]["admin"])
    response = client.get(f"/manage/queues/{world['queue_id']}/review/{prompt.pk}/")
    assert response.status_code == 200 and "x" * settings.MAX_TEXT_CHARS in response.content.decode()


# CSV: a cell a spreadsheet would run as a formula starts with a quote --------------------------------


def test_the_agreement_csv_keeps_formulas_from_running(client, world):
    client.force_login(world["users"]["admin"])
    response = client.get(f"/manage/queues/{world['queue_id']}/agreement.csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert "'" + HOSTILE_USERNAME in [row["username"] for row in rows]
    formula_starts = ("=", "+", "-", "@", "\t", "\r")
    assert not any(cell.startswith(formula_starts) for row in rows for cell in row.values() if cell)


def test_every_csv_the_app_writes_goes_through_csv_cell():
    """A structural check: a module that writes CSV (csv.writer / DictWriter) imports csv_cell.

    The behaviour is tested above (agreement) and in tests/labeling/test_exports.py (the exports).
    """
    writers = []
    for module in Path(settings.BASE_DIR).glob("**/*.py"):
        if module.relative_to(settings.BASE_DIR).parts[0] in {"tests", ".venv", "bench"}:
            continue
        text = module.read_text()
        if re.search(r"csv\.(writer|DictWriter)\(", text):
            writers.append(module.relative_to(settings.BASE_DIR).as_posix())
            assert "csv_cell" in text, f"{module} writes CSV without core.text.csv_cell"
    assert sorted(writers) == ["labeling/datasets/exports.py", "labeling/quality/views.py"]


def test_hostile_text_in_the_queue_name_is_escaped_in_the_download_name(client, world):
    client.force_login(world["users"]["admin"])
    disposition = client.get(f"/manage/queues/{world['queue_id']}/agreement.csv")["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="agreement-\d+-[a-z0-9_-]*\.csv"', disposition), disposition

