from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

from core.text import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    # render_markdown escapes raw HTML and sanitises the result, so marking it safe is sound.
    return mark_safe(render_markdown(text))  # noqa: S308


@register.filter
def get_item(mapping: dict, key):
    return (mapping or {}).get(key)


# An answer card's rating and flag controls, built in Python: the same markup as a template loop, but the
# rank page repeats it for 9 answers x (7 ratings + 5 flags), which made it most of the page's render time.
_RATING_OPTION = (
    '<label class="rating-option" title="{value} of 7">'
    '<input type="radio" form="rank-form" name="rating-{pk}" value="{value}" aria-label="{value} of 7"{checked}>'
    '<span aria-hidden="true">{value}</span></label>'
)
_FLAG_OPTION = (
    '<label class="flag-option">'
    '<input type="checkbox" form="rank-form" name="flag-{pk}" value="{code}"{checked}>'
    "<span>{label}</span></label>"
)


@register.simple_tag
def answer_controls(answer_pk: int, rating: str | None, flags: list[str] | None):
    """The rating radios (1-7, `rating` checked) and the flag checkboxes (`flags` checked) of one answer."""
    from labeling.models import Flag

    pk = int(answer_pk)  # an id: never text to escape
    # Options are separated by white space, as the template's lines were: inline labels keep their gaps.
    ratings = "\n".join(
        _RATING_OPTION.format(value=value, pk=pk, checked=" checked" if rating == str(value) else "")
        for value in range(1, 8)
    )
    checked_flags = set(flags or ())
    flag_options = "\n".join(
        _FLAG_OPTION.format(pk=pk, code=escape(code), label=escape(label),
                            checked=" checked" if code in checked_flags else "")
        for code, label in Flag.choices
    )  # fmt: skip
    return mark_safe(  # noqa: S308 - every value above is an int or escaped
        '<fieldset class="rating"><legend>Overall quality</legend>'
        f'<span class="rating-end" aria-hidden="true">poor</span>\n{ratings}\n'
        '<span class="rating-end" aria-hidden="true">excellent</span></fieldset>\n'
        f'<fieldset class="flags"><legend>Flags</legend>\n{flag_options}\n</fieldset>'
    )


@register.filter
def md_cell(text) -> str:
    """Text safe inside a Markdown table cell (the dataset card's tables)."""
    return str(text).replace("|", "\\|").replace("\n", " ")
