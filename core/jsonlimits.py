"""Reading JSON that users send (API bodies, a ranking's groups): bounded nesting, finite numbers, one error.

Python's json module recurses once per level and raises RecursionError, not ValueError, near 1,000
levels, so a reader that catches only ValueError answers a deeply nested body with a 500. Here nesting
has an explicit limit, far below Python's, and every way a text can fail to be acceptable JSON is a
JSONInputError (a ValueError) whose message can be shown to the sender.
"""
import json
import math
import re
import sys
from typing import Any

# Deeper than any body or meta object we expect (a pushed answer's meta sits 5 levels down), and far
# below Python's recursion limit, so that checking and storing what we accepted cannot recurse too far.
MAX_DEPTH = 64


# The JSON escape of a UTF-16 surrogate: only bodies that hold one need the full check below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JSONInputError(ValueError):
    """The text is not JSON we accept; the message says why."""


def _refuse_constant(name: str) -> None:
    raise JSONInputError(f"{name} is not allowed")  # NaN, Infinity: not JSON, and PostgreSQL refuses them


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 parses as infinity, which no JSON column stores
        raise JSONInputError(f"the number {text[:30]} is too large")
    return number


def too_deep(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists and dicts deeper than `max_depth`; level by level, without recursing."""
    level = [value] if isinstance(value, (list, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (list, dict))
        ]
    return False


def loads(text: str | bytes) -> Any:
    """Parse `text` as JSON, or raise JSONInputError saying why it is not acceptable."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        value = None
        deep = True
    except (JSONInputError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JSONInputError(str(error)) from None
    except ValueError:  # the one left: int() refuses more digits than sys.get_int_max_str_digits()
        raise JSONInputError(f"a number has more than {sys.get_int_max_str_digits():,} digits") from None
    else:
        deep = too_deep(value)
    if deep:
        raise JSONInputError(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        try:  # a pair of escapes is one character; a lone one is no text at all and could not be stored or echoed
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONInputError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff): not text") from None
    return value
