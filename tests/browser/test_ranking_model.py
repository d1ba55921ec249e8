"""static/js/ranking-model.js on its own, in Chromium with no page around it: the rules of tie groups.

The ranking page (tests/browser/test_labeler_pages.py) drives the same model through the keyboard and
drag-and-drop; these tests pin the model's rules directly.
"""
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.browser

MODEL = Path(settings.BASE_DIR) / "static" / "js" / "ranking-model.js"


@pytest.fixture
def run(browser):
    """Evaluate a function body with `createRanking` loaded; returns its JSON-able result."""
    context = browser.new_context()
    page = context.new_page()
    page.add_script_tag(path=str(MODEL))
    yield lambda body: page.evaluate(f"() => {{ {body} }}")
    context.close()


def test_ties_give_tie_groups_and_competition_ranks(run):
    result = run("""
        const m = createRanking([1, 2, 3, 4]);
        [1, 2, 3, 4].forEach((id) => m.place(id));
        m.toggleTie(3);
        return {groups: m.groups(), ranks: Array.from(m.ranks()), unplaced: m.unplaced()};
    """)
    assert result == {"groups": [[1], [2, 3], [4]], "ranks": [[1, 1], [2, 2], [3, 2], [4, 4]], "unplaced": []}


def test_taking_out_a_group_start_never_merges_its_neighbours(run):
    groups = run("""
        const m = createRanking([1, 2, 3, 4]);
        [1, 2, 3, 4].forEach((id) => m.place(id));
        m.toggleTie(3);  // [1] [2, 3] [4]
        m.takeOut(2);
        return m.groups();
    """)
    assert groups == [[1], [3], [4]]


def test_an_answer_put_inside_a_tie_group_joins_it(run):
    groups = run("""
        const m = createRanking([1, 2, 3, 4, 5]);
        [1, 2, 3, 4].forEach((id) => m.place(id));
        m.toggleTie(3); m.toggleTie(4);  // [1] [2, 3, 4]
        m.putIn(5, 2);                   // between 2 and 3
        return m.groups();
    """)
    assert groups == [[1], [2, 5, 3, 4]]


def test_refusals_change_nothing(run):
    result = run("""
        const m = createRanking([7, 8, 9]);
        const placedUnknown = m.place(42);
        m.place(9); m.place(7);
        const twice = m.place(9);
        const tieTop = m.toggleTie(9);
        const upFromTop = m.move(9, -1);
        const downFromBottom = m.move(7, 1);
        const moveUnplaced = m.move(8, 1);
        return {flags: [placedUnknown, twice, tieTop, upFromTop, downFromBottom, moveUnplaced],
                groups: m.groups(), unplaced: m.unplaced(), order: m.order()};
    """)
    assert result == {"flags": [False] * 6, "groups": [[9], [7]], "unplaced": [8], "order": [8, 9, 7]}


def test_restore_keeps_known_answers_once_and_reads_id_strings(run):
    result = run("""
        const m = createRanking([1, 2, 3]);
        const any = m.restore([["3", 99], [1, 3], "junk", [2]]);
        const none = createRanking([1]).restore("not a list");
        return {any, none, groups: m.groups()};
    """)
    assert result == {"any": True, "none": False, "groups": [[3], [1], [2]]}
