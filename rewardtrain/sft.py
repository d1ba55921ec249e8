"""`python -m rewardtrain.sft`: start an SFT run from a shell, through the same service as the page and the API.

    python -m rewardtrain.sft --policy smollm2-v1 --queue 2 [--queue 3] [--name helpful-sft] [--epochs 2]
        [--filters '{"exclude_flagged": true}'] [--here]

The run is recorded (audited, with no user) and sent to the training queue; `--here` runs it in this process
instead, with no worker. Either way the run's id is printed first and, with --here, its figures as JSON at the
end. Files to files, with no database: `python -m rewardtrain.ml.sft` (also under `accelerate launch`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rewardtrain.sft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="The policy to start from: its id or name-vN (smollm2-v1).")
    parser.add_argument("--queue", type=int, action="append", required=True, help="A queue id; repeat for more.")
    parser.add_argument("--name", default="", help="The new policy's name (default: the policy's + -sft).")
    parser.add_argument("--filters", default="{}", help="Export filters as JSON (docs/exports.md).")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--here", action="store_true", help="Train in this process instead of sending it to a worker.")
    return parser.parse_args(argv)


def find_policy(given: str):
    from .models import Policy

    if given.isdigit():
        return Policy.objects.filter(pk=int(given)).first()
    name, _, version = given.rpartition("-v")
    return Policy.objects.filter(name=name, version=int(version)).first() if version.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()
    from labeling.models import Queue

    from . import sft_runs
    from .models import SFTRun

    policy = find_policy(args.policy)
    queues = list(Queue.objects.filter(pk__in=args.queue))
    problems = [f"No policy {args.policy!r}." if policy is None else ""]
    problems += [f"No queue {pk}." for pk in sorted(set(args.queue) - {queue.pk for queue in queues})]
    try:
        filters = json.loads(args.filters)
    except json.JSONDecodeError as error:
        problems.append(f"--filters is not JSON: {error}")
    if any(problems):
        print("\n".join(problem for problem in problems if problem), file=sys.stderr)
        return 2
    hyperparameters = {
        "epochs": args.epochs, "learning_rate": args.learning_rate, "max_length": args.max_length,
        "batch_size": args.batch_size, "validation_fraction": args.validation_fraction, "seed": args.seed,
        "lora": args.lora,
    }  # fmt: skip
    try:
        run = sft_runs.request_sft_run(
            policy=policy, queues=queues, filters=filters, output_name=args.name, send=not args.here,
            **hyperparameters,
        )  # fmt: skip
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"SFT run {run.pk} from {policy}: {'training here' if args.here else 'sent to the training queue'}.")
    if not args.here:
        return 0
    sft_runs.execute_sft_run(run.pk)
    run = SFTRun.objects.select_related("output").get(pk=run.pk)
    print(json.dumps({"run": run.pk, "status": run.status, "error": run.error, "policy": str(run.output or ""),
                      "metrics": run.metrics}, indent=2))  # fmt: skip
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
