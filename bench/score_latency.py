"""Latency of scoring 9 answers with a reward model: in the web process (cached) vs on a worker.

The score API can score in process, with the model cached after the first call, or send the work to
a Celery worker and wait for the result. This measures both on the same MiniLM reward model and the
same inputs, in one run: the median and p95 of `--calls` calls after one warm-up call each. The
worker path uses the real Redis at 127.0.0.1:6379 (db 14) as broker and result backend.

    .venv/bin/python -m bench.score_latency --calls 30
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/14"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
os.environ["CELERY_BROKER_URL"] = REDIS_URL
os.environ["CELERY_RESULT_BACKEND"] = REDIS_URL
os.environ["HF_HUB_OFFLINE"] = "1"

import django  # noqa: E402

django.setup()

from bench.common import timed  # noqa: E402
from rewardtrain.ml.backbones import minilm_path  # noqa: E402
from rewardtrain.ml.model_sources import load_from_disk  # noqa: E402
from rewardtrain.ml.scoring import load_scorer  # noqa: E402
from rewardtrain.tasks import score_answers_task  # noqa: E402

PROMPT = "Human: How do I keep basil alive on a windowsill?\n\nAssistant:"
ANSWERS = [
    f"Answer {i}: water it when the top of the soil is dry, give it at least six hours of sun, pinch off "
    f"flower buds so it keeps making leaves, and use a pot with drainage holes. " * (1 + i % 3)
    for i in range(9)
]


def reward_model_dir(folder: Path) -> Path:
    """MiniLM with a one-output head, saved like a trained reward model (same size and speed)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = load_from_disk(AutoModelForSequenceClassification, minilm_path(), num_labels=1)
    model.save_pretrained(folder)
    load_from_disk(AutoTokenizer, minilm_path()).save_pretrained(folder)
    return folder



def report(name: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    p95 = sorted(seconds)[int(0.95 * (len(seconds) - 1))]
    print(f"{name:<28} median {median * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   ({len(seconds)} calls)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = reward_model_dir(Path(tmp) / "rm")
        in_process = timed(lambda: load_scorer(model_dir).score(PROMPT, ANSWERS), args.calls, warm_up=True)

        env = {**os.environ, "CELERY_BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": REDIS_URL}
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("celery")), "-A", "annotate", "worker", "--pool=solo",
             "-Q", "training", "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            on_worker = timed(
                lambda: score_answers_task.delay(str(model_dir), PROMPT, ANSWERS).get(timeout=120), args.calls,
                warm_up=True,  # the first call loads the model
            )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    print(f"scoring 9 answers ({sum(map(len, ANSWERS)) // 9} chars each on average), MiniLM-L6, CPU, 2 threads")
    fast = report("in process (cached model)", in_process)
    slow = report("Celery worker on Redis", on_worker)
    print(f"ratio worker / in process: {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
