"""Text as every app takes it in and gives it out.

- Plain text: the rules a text must meet to be stored (PostgreSQL stores neither NUL nor a lone surrogate), line
  breaks as one LF, short free-text fields (a skip note, a review reason). Each caller keeps its own messages.
- The upload file names the importer reads (JSONL_SUFFIXES, CSV_SUFFIXES), for the importer and the upload form.
- CSV cells that a spreadsheet opens as text (csv_cell): shared by the agreement CSV and the dataset exports.
- Untrusted Markdown (prompts, answers, instructions, demonstrations) rendered to safe HTML: markdown-it runs with
  raw HTML disabled, so `<script>` in a model's answer is shown as text; nh3 then sanitises the output as a second
  line of defence (links, attributes, schemes).
"""
import functools
import hashlib
from typing import Any

import nh3
from django.core.cache import cache
from markdown_it import MarkdownIt

# Plain text ---------------------------------------------------------------------------------------------------


def normalize_newlines(text: str) -> str:
    """Browsers send a textarea's line breaks as CRLF; they are stored (and counted) as one LF."""
    return text.replace("\r\n", "\n")


def without_nul(text: str) -> str:
    """`text` with its NUL characters removed, for text taken whatever it holds (a sampled answer, a preview)."""
    return text.replace("\x00", "")


def character_problem(value: str) -> str | None:
    """Why `value` cannot be stored ("contains a NUL character", …), or None if it can.

    PostgreSQL stores neither NUL nor the lone surrogates that a JSON "\\ud800" escape produces.
    """
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an invalid Unicode escape (a lone surrogate)"
    return None


def nested_character_problem(value: Any) -> str | None:
    """character_problem of the first text in a JSON value (keys and values of objects, items of lists) that has one."""
    if isinstance(value, str):
        return character_problem(value)
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = nested_character_problem(item)
        if problem:
            return problem
    return None


def short_text(value: object) -> str:
    """A short free-text field (a skip note, a review reason) as stored: one LF per line break, no surrounding
    space; "" when there is no text."""
    return normalize_newlines(value).strip() if isinstance(value, str) else ""


def is_short_plain_text(text: str, *, max_chars: int) -> bool:
    """Whether a short free-text field can be stored: at most `max_chars` characters, none that cannot be stored."""
    return len(text) <= max_chars and character_problem(text) is None


# Upload file names --------------------------------------------------------------------------------------------

JSONL_SUFFIXES = (".jsonl", ".json-lines", ".ndjson")
CSV_SUFFIXES = (".csv",)
UPLOAD_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES


# CSV cells ----------------------------------------------------------------------------------------------------

# A spreadsheet runs a cell that starts with one of these as a formula (usernames and texts are chosen by users).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """Empty for a missing value, true/false for a flag, and text that cannot start a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


# Markdown -----------------------------------------------------------------------------------------------------

# breaks: a single newline is a line break, as model answers (poems, addresses) expect.
_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "s", "del", "img",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"alt", "title"}, "ol": {"start"}}
# A table column's alignment is a class, not markdown-it's style attribute: the Content-Security-Policy allows
# no style attributes (static/css/app.css styles these).
_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
_ALLOWED_CLASSES = {"th": _ALIGN_CLASSES, "td": _ALIGN_CLASSES}


def _alignment_as_class(state) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrs.pop("style", None)):
            token.attrSet("class", "align-" + str(style).removeprefix("text-align:"))


_markdown.core.ruler.push("alignment_as_class", _alignment_as_class)


# Cached HTML is keyed on this: change it with the options or the allowed tags above.
RENDERING = "md1"
RENDERED_FOR = 7 * 24 * 3600  # seconds the shared cache keeps a rendering


@functools.lru_cache(maxsize=512)
def render_markdown(text: str) -> str:
    """Safe HTML for `text`; images keep only their alt text (no remote loads from untrusted input).

    Rendering costs about 1 ms per 700 characters, and a task page shows the instructions, the prompt
    and up to nine answers that other labelers' pages show too: each text is rendered once, then read
    from this process's memory or from the shared cache (Redis in production).
    """
    return render_markdown_many([text])[0]


def render_markdown_many(texts: list[str]) -> list[str]:
    """render_markdown of each text, read from the shared cache in one round trip (a task page's prompt and nine
    answers were ten): the ones missing are rendered and stored together."""
    keys = [_rendering_key(text) for text in texts]
    found = cache.get_many(keys)
    rendered = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in rendered:
            rendered[key] = markdown_to_html(text)
    if rendered:
        cache.set_many(rendered, RENDERED_FOR)
    return [found[key] if key in found else rendered[key] for key in keys]


def _rendering_key(text: str) -> str:
    return f"markdown:{RENDERING}:{hashlib.sha256((text or '').encode('utf-8', 'surrogatepass')).hexdigest()}"


def markdown_to_html(text: str) -> str:
    """render_markdown without the caches: for text seen once (the editor's live preview)."""
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        allowed_classes=_ALLOWED_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
