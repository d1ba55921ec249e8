"""Rendering untrusted Markdown (prompts, answers, instructions, demonstrations) to safe HTML.

markdown-it runs with raw HTML disabled, so `<script>` in a model's answer is shown as text;
nh3 then sanitises the output as a second line of defence (links, attributes, schemes).
"""
import nh3
from markdown_it import MarkdownIt

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


def render_markdown(text: str) -> str:
    """Safe HTML for `text`; images keep only their alt text (no remote loads from untrusted input)."""
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        allowed_classes=_ALLOWED_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
