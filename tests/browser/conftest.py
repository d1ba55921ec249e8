"""Browser fixtures: one headless Chromium per session, a fresh context per test, logging in,
and realistic queues (the same content feeds the screenshots in docs/screenshots/).

Debian's Chromium is used directly (`playwright install` is never run). A JavaScript error on any
page fails the test that caused it.
"""

import pytest
from playwright.sync_api import Browser, Page

from labeling.assignment.services import sync_tasks
from labeling.models import Answer, Prompt, Queue

LAPTOP = {"width": 1366, "height": 768}

INSTRUCTIONS = """\
Judge each answer as a reply **to this prompt, for this reader**.

- Prefer answers that are *helpful*, *true* and *harmless*, in that order of attention.
- A short answer can beat a long one. Made-up facts are worse than a plain “I don't know”.
- Tie two answers only when you really cannot tell them apart.
"""

PHOTOSYNTHESIS = "Explain photosynthesis to a 10-year-old. Keep it short and fun."

PHOTOSYNTHESIS_ANSWERS = [
    # A clear, friendly answer with a list.
    "Plants are like little chefs that cook their own food!\n\n"
    "They need three ingredients:\n\n"
    "1. **Sunlight**, which they catch with their green leaves\n"
    "2. **Water**, which they drink up through their roots\n"
    "3. **Carbon dioxide**, a gas in the air that we breathe out\n\n"
    "The leaves mix these together to make sugar, which is the plant's food. "
    "And as a bonus, they let out **oxygen**, the air we need to breathe!",
    # Correct but far too technical for a child.
    "Photosynthesis is the process by which photoautotrophs convert electromagnetic energy into chemical "
    "energy. In the light-dependent reactions in the thylakoid membranes, photosystems I and II drive "
    "electron transport that yields ATP and NADPH; the Calvin–Benson cycle in the stroma then fixes CO₂ "
    "via RuBisCO:\n\n`6 CO₂ + 6 H₂O + light → C₆H₁₂O₆ + 6 O₂`",
    # Far too short.
    "Plants eat sunlight.",
    # Made-up facts.
    "Plants breathe in oxygen at night and turn it into sugar using moonlight. That is why plants grow "
    "mostly while you are asleep, and why leaves turn silver when the moon is full.",
    # Long and good: shows how a long answer scrolls inside its card.
    "## The leaf kitchen\n\n"
    "Imagine every leaf is a tiny kitchen. Inside are millions of even tinier cooks called "
    "**chloroplasts**. They are green, and that is why leaves are green too.\n\n"
    "## What goes in\n\n"
    "- Water travels up from the roots, through the stem, like juice through a straw.\n"
    "- Air sneaks in through tiny doors under the leaf called *stomata*.\n"
    "- Sunlight shines on the leaf and gives the cooks their energy.\n\n"
    "## What comes out\n\n"
    "The cooks use the sunlight's energy to stick water and air together into **sugar**. The plant uses "
    "the sugar to grow roots, leaves, flowers and fruit. The leftover is **oxygen**, which floats out "
    "of the tiny doors, and that is the air you are breathing right now.\n\n"
    "## Try it\n\n"
    "Put a leaf in a glass of water in the sun. After an hour, look closely: the little bubbles on the "
    "leaf are oxygen the leaf just made!",
    # A story; fine but wanders.
    "Once upon a time there was a sunflower named Sunny. Every morning Sunny turned her face to the sun "
    "and said “breakfast time!”. She drank water with her roots and breathed in air with her leaves, "
    "and with the sun's help she made sugar to grow taller than the fence. Sunny's secret is called "
    "photosynthesis.",
    # Needless refusal.
    "I'm sorry, but I can't help with that request.",
    # Wrong language.
    "La photosynthèse, c'est la façon dont les plantes fabriquent leur nourriture avec la lumière du "
    "soleil, l'eau et le gaz carbonique de l'air. Elles rejettent de l'oxygène.",
    # Good and short, with an experiment.
    "Plants make their own food using sunlight, water and air. The green stuff in leaves, called "
    "*chlorophyll*, catches sunlight like a solar panel. The plant then turns water and carbon dioxide "
    "into sugar for energy and gives off oxygen.\n\n"
    "**Fun fact:** almost all the oxygen you breathe was made by plants and tiny ocean algae!",
]

RAINBOW = "Why is the sky blue? Answer in two or three sentences."
RAINBOW_ANSWERS = [
    "Sunlight is made of all colours. When it hits the air, the tiny gas molecules scatter blue light much "
    "more than red light, so blue light comes at us from every direction of the sky.",
    "Because it reflects the ocean.",
    "The sky is blue because of **Rayleigh scattering**: shorter wavelengths scatter more strongly "
    "(roughly as 1/λ⁴), and our eyes are more sensitive to blue than to violet.",
    "Air scatters blue sunlight the most, so the sky looks blue. At sunset the light travels through "
    "more air, the blue is scattered away, and we see reds and oranges.",
    "The sky is blue because blue is the colour of oxygen gas.",
]

WRITING_INSTRUCTIONS = """\
Write the reply you would want the assistant to give: **helpful, true and kind**.

- Answer the request as asked; keep to the length and tone the prompt wants.
- Use Markdown only where it helps (a short list, a code block).
"""

DEMONSTRATION_PROMPTS = [
    "Write a short, friendly note to a neighbour asking them to water my tomato plants while I am away "
    "for a week.",
    "Give me three tips for remembering people's names at a party.",
]


@pytest.fixture
def page(browser: Browser, live_server) -> Page:
    context = browser.new_context(viewport=LAPTOP, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: _console_error(message, errors))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _console_error(message, errors: list[str]) -> None:
    # HTTP error statuses (a refused submit answers 400) are expected; script errors are not.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


def log_in(page: Page, user) -> None:
    page.goto("/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def make_labeling_queue(
    name: str,
    *,
    kind: str,
    prompts: list[tuple[str, list[str]]],
    instructions: str = INSTRUCTIONS,
    **fields,
) -> Queue:
    """A queue of the given prompts, each with its answers, and its tasks."""
    queue = Queue.objects.create(name=name, task_kind=kind, instructions=instructions, **fields)
    for index, (text, answers) in enumerate(prompts):
        prompt = Prompt.objects.create(queue=queue, text=text, content_hash=f"{name}-{index}")
        Answer.objects.bulk_create(
            Answer(prompt=prompt, position=position, text=answer, model=f"policy-{position % 3}")
            for position, answer in enumerate(answers)
        )
    sync_tasks(queue)
    return queue
