"""manage.py sample_demo_answers: (re)write the ranking demo's answers, sampled with SmolLM2.

Reads the prompts of a JSONL file in the import format (their id, text and meta are kept, their answers
replaced), samples K answers to each with the code a generation job uses, and writes the file back.
`make run` loads the written file; it never runs a model. See docs/generation.md, "The demo data".
"""
import json
import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.management.commands.load_demo import DEMO_DIR
from labeling.models import MAX_ANSWERS, MIN_RANKED_ANSWERS
from rewardtrain.generation import answer_prompt
from rewardtrain.ml.sampling import SMOLLM2, load_generator
from rewardtrain.policies import resolve_generator

DEMO_FILE = DEMO_DIR / "ranking_prompts.jsonl"  # the file load_demo loads: labeling's demo data


class Command(BaseCommand):
    help = "Sample the ranking demo's answers with a language model (SmolLM2 by default) and write the JSONL file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompts", type=Path, default=DEMO_FILE, help="The JSONL file to read prompts from.")
        parser.add_argument("--out", type=Path, default=DEMO_FILE, help="Where to write (default: the same file).")
        parser.add_argument("--model", default=SMOLLM2, help="The generator, as in a generation job.")
        parser.add_argument("--answers", type=int, default=4, help="Answers per prompt (K).")
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--top-p", type=float, default=0.95)
        parser.add_argument("--max-new-tokens", type=int, default=160)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, prompts: Path, out: Path, model: str, answers: int, **options) -> None:
        import torch


        if not MIN_RANKED_ANSWERS <= answers <= MAX_ANSWERS:
            raise CommandError(f"--answers must be {MIN_RANKED_ANSWERS} to {MAX_ANSWERS}, not {answers}.")
        sampling = {
            "temperature": options["temperature"],
            "top_p": options["top_p"],
            "max_new_tokens": options["max_new_tokens"],
            "seed": options["seed"],
        }
        rows = _read_rows(prompts)
        # One thread: the sums, and so the sampled tokens, do not depend on the machine's core count; and
        # on a shared two-core machine two threads made each token 10 times slower, not faster.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._sample(rows, out, model, answers, sampling)
        finally:
            torch.set_num_threads(threads)

    def _sample(self, rows: list[dict], out: Path, model: str, answers: int, sampling: dict) -> None:
        from rewardtrain.ml.device import pick_device

        started = time.monotonic()
        device = pick_device()
        files = resolve_generator(model)
        generator, tokenizer = load_generator(files.name_or_path, files.gguf_file)
        generator.to(device)
        self.stdout.write(f"Loaded {model} in {time.monotonic() - started:.0f} s; sampling {len(rows)} prompts.")
        for row in rows:
            began = time.monotonic()
            try:
                texts = answer_prompt(generator, tokenizer, row["prompt"], answers, **sampling, device=device)
            except Exception as error:
                raise CommandError(
                    f"Prompt {row.get('id', '?')}: {error} Nothing was written; try another --seed."
                ) from error
            # The same fields as the answers of a generation job, so the demo looks like real use.
            row["answers"] = [{"text": text, "model": model, "meta": sampling} for text in texts]
            distinct = len({text.strip() for text in texts})
            self.stdout.write(
                f"  {row.get('id', '?')}: {distinct} distinct of {len(texts)}, {time.monotonic() - began:.0f} s"
            )
        # Written beside the target and renamed: a failed run leaves the old file whole.
        partial = out.with_name(out.name + ".partial")
        partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        os.replace(partial, out)
        self.stdout.write(f"Wrote {len(rows)} prompts to {out} in {time.monotonic() - started:.0f} s.")


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CommandError(f"Cannot read --prompts {path}: {error.strerror}.") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CommandError(f"--prompts {path}, line {number}: not JSON ({error}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise CommandError(f"--prompts {path}, line {number}: a row needs a non-empty \"prompt\".")
        rows.append(row)
    if not rows:
        raise CommandError(f"--prompts {path} holds no prompts.")
    return rows
