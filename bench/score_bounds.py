"""What long texts cost: pair encoding of 20,000 + 20,000 characters, and the score API under gunicorn.

Part 1, encoding (each way in its own process, so its peak memory is its own): one (prompt, answer)
pair of 20,000 characters each, truncated to 512 MiniLM tokens, by
  - `PairEncoder` (token ids cut with the pair template read once),
  - transformers' own `tokenizer(prompt, answer, truncation=True, max_length=512)` (what TRL calls),
  - the path before this fix (Encoding.truncate, which keeps overflowing pieces, then post_process),
    once, on prose only unless --slow-before (it takes minutes and GBs on noise).
Texts are prose (words) and noise (random characters: a token per character or more, the worst case).

Part 2, the score API as in production (gunicorn, `--workers` sync workers, SQLite in a temporary
directory): the largest request SCORE_MAX_TOKENS accepts (answers x 512 tokens), median of --runs
calls; then `--burst` requests at once, of 860 KB each (the probe's), then of the largest accepted size,
while a plain GET /login/ is timed every 0.2 s: statuses, the login page's latency, the web processes'
peak RSS.

    .venv/bin/python -m bench.score_bounds [--runs 5] [--burst 6] [--workers 3]
"""
import argparse
import json
import multiprocessing
import os
import random
import resource
import secrets
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHARS = 20_000


def texts(kind: str, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    if kind == "prose":
        words = "the a garden water soil sun basil leaves pot drainage every week light window grows".split()
        make = lambda: " ".join(rng.choice(words) for _ in range(CHARS // 4))[:CHARS]  # noqa: E731
    else:
        alphabet = string.ascii_letters + string.digits + string.punctuation + "éßø中文 "
        make = lambda: "".join(rng.choice(alphabet) for _ in range(CHARS))  # noqa: E731
    return make(), make()


def encode_in_child(way: str, kind: str, runs: int, queue) -> None:
    import copy

    from transformers import AutoTokenizer

    from rewardtrain.ml.backbones import minilm_path
    from rewardtrain.ml.encoding import PairEncoder, keep_lengths
    from rewardtrain.ml.model_sources import load_from_disk

    tokenizer = load_from_disk(AutoTokenizer, minilm_path())
    encoder = PairEncoder(tokenizer, 512)
    prompt, answer = texts(kind, 0)

    def before():
        prompt_encoding, answer_encoding = encoder.backend.encode_batch([prompt, answer], add_special_tokens=False)
        keep = keep_lengths(len(prompt_encoding.ids), len(answer_encoding.ids), encoder.budget)
        prompt_encoding, answer_encoding = copy.deepcopy(prompt_encoding), copy.deepcopy(answer_encoding)
        prompt_encoding.truncate(keep[0], direction="left")
        answer_encoding.truncate(keep[1], direction="right")
        joined = encoder.backend.post_process(prompt_encoding, answer_encoding, add_special_tokens=True)
        return len(joined.ids), len(joined.overflowing)

    def transformers_call():
        return len(tokenizer(prompt, answer, truncation=True, max_length=512)["input_ids"]), 0

    call = {
        "PairEncoder": lambda: (len(encoder.encode(prompt, [answer])[0]), 0),
        "transformers tokenizer()": transformers_call,
        "before (truncate + post_process)": before,
    }[way]
    tokens = len(encoder.tokenize([prompt])[0])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        length, pieces = call()
        seconds.append(time.perf_counter() - started)
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    queue.put((statistics.median(seconds), growth, length, pieces, tokens))


def bench_encoding(runs: int, slow_before: bool) -> None:
    print(f"Pair encoding: {CHARS:,} + {CHARS:,} characters -> 512 MiniLM tokens; median of {runs} runs, each way in "
          "its own process (peak RSS growth over the loaded tokenizer)")  # fmt: skip
    context = multiprocessing.get_context("spawn")
    for kind in ("prose", "noise"):
        figures = {}
        for way in ("PairEncoder", "transformers tokenizer()", "before (truncate + post_process)"):
            if way.startswith("before") and kind == "noise" and not slow_before:
                print(f"  {kind:<6} {way:<34} skipped (minutes and GBs; --slow-before runs it)")
                continue
            queue = context.Queue()
            child = context.Process(target=encode_in_child, args=(way, kind, 1 if way.startswith("before") else runs,
                                                                  queue))  # fmt: skip
            child.start()
            median, growth, length, pieces, tokens = queue.get()
            child.join()
            figures[way] = median
            extra = f", {pieces:,} overflowing pieces" if pieces else ""
            print(f"  {kind:<6} {way:<34} {median * 1000:9.1f} ms  RSS +{growth:7.1f} MiB  -> {length} tokens "
                  f"(each text {tokens:,} tokens{extra})")  # fmt: skip
        ours = figures["PairEncoder"]
        for way, median in figures.items():
            if way != "PairEncoder":
                print(f"  {kind:<6} {way} / PairEncoder: {median / ours:.1f}x")


def reward_model_dir(folder: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardtrain.ml.backbones import minilm_path
    from rewardtrain.ml.model_sources import load_from_disk

    model = load_from_disk(AutoModelForSequenceClassification, minilm_path(), num_labels=1)
    model.save_pretrained(folder)
    load_from_disk(AutoTokenizer, minilm_path()).save_pretrained(folder)
    return folder


def setup_site(var_dir: Path) -> tuple[dict, int, str]:
    """Migrated SQLite database with an ML user's token and a MiniLM reward model; the servers' environment."""
    env = {
        **os.environ, "ANNOTATE_VAR_DIR": str(var_dir), "SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1", "SECURE_COOKIES": "0", "SECURE_SSL_REDIRECT": "0", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
    }  # fmt: skip
    script = f"""
import django, json; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
from core.tokens import issue_token
from rewardtrain.models import PairDataset, RewardModel, TrainingRun
from django.contrib.auth.models import Group, User
dataset = PairDataset.objects.create(name="d", version=1, status="succeeded", rows=1)
run = TrainingRun.objects.create(dataset=dataset, base_model="minilm", status="succeeded")
model = RewardModel.objects.create(run=run, name="rm", path={str(reward_model_dir(var_dir / "rm"))!r})
user = User.objects.create_user("ml1", password=None)
user.groups.add(Group.objects.get_or_create(name="ml")[0])
_, key = issue_token(user=user, name="bench")
print(json.dumps([model.pk, key]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    model_id, key = json.loads(out.stdout.strip().splitlines()[-1])
    return env, model_id, key


def children_rss_mib(pid: int) -> float:
    total = 0
    for child in Path("/proc").glob("[0-9]*"):
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(pid) or child.name == str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def burst_with_logins(url: str, headers: dict, body: dict, burst: int, base: str, server_pid: int, label: str):
    """`burst` score requests at once while GET /login/ is timed every 0.2 s until they are all answered."""
    import httpx

    size = len(json.dumps(body).encode())
    statuses, logins, peak = [], [], [0.0]
    done = threading.Event()

    def post():
        with httpx.Client(timeout=300) as client:
            started = time.perf_counter()
            response = client.post(url, json=body, headers=headers)
            statuses.append((response.status_code, time.perf_counter() - started))

    def watch():
        with httpx.Client(timeout=300) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get(f"{base}/login/")
                logins.append(time.perf_counter() - started)
                peak[0] = max(peak[0], children_rss_mib(server_pid))
                time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    posts = [threading.Thread(target=post) for _ in range(burst)]
    for thread in posts:
        thread.start()
    for thread in posts:
        thread.join()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    codes = sorted(code for code, _ in statuses)
    print(f"  {burst} x {label} request ({size / 1024:.0f} KB) at once: statuses {codes}, all answered in "
          f"{elapsed:.2f} s (slowest {max(s for _, s in statuses):.2f} s)")
    print(f"    GET /login/ meanwhile: median {statistics.median(logins) * 1000:.0f} ms, worst "
          f"{max(logins) * 1000:.0f} ms ({len(logins)} requests); web processes' peak RSS {peak[0]:.0f} MiB")


def bench_api(runs: int, burst: int, workers: int) -> None:
    import httpx

    from bench.load import free_port, stop, wait_healthy

    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        var_dir = Path(tmp)
        env, model_id, key = setup_site(var_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = var_dir / "gunicorn.log"
        with log.open("wb") as out:
            server = subprocess.Popen([str(BIN / "gunicorn"), "annotate.wsgi", "--workers", str(workers), "--bind",
                                       f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, [server], [log])
            headers = {"Authorization": f"Token {key}"}
            url = f"{base}/api/v1/reward-models/{model_id}/score/"
            max_tokens = int(env.get("SCORE_MAX_TOKENS", "8192"))
            prose, _ = texts("prose", 1)
            largest = {"prompt": prose[:4000], "answers": [prose[i * 1000 :] for i in range(max_tokens // 512)]}
            with httpx.Client(timeout=120) as client:
                first = client.post(url, json=largest, headers=headers)
                assert first.status_code == 200, first.text
                seconds = []
                for _ in range(runs):
                    started = time.perf_counter()
                    response = client.post(url, json=largest, headers=headers)
                    seconds.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                over = client.post(url, json={**largest, "answers": largest["answers"] + [prose]}, headers=headers)
            print(f"\nScore API, gunicorn {workers} sync workers (timeout 30 s), SCORE_MAX_TOKENS={max_tokens}, "
                  f"SCORE_CONCURRENCY={env.get('SCORE_CONCURRENCY', '1')}")  # fmt: skip
            print(f"  largest accepted request ({len(largest['answers'])} answers x 512 tokens): median "
                  f"{statistics.median(seconds):.2f} s of {runs} (min {min(seconds):.2f}, max {max(seconds):.2f})")
            print(f"  one answer more: HTTP {over.status_code} {over.json()}")

            noise = "".join(ch for ch in texts("noise", 2)[0] if ch.isascii())[:19_990]
            probe = {"prompt": noise, "answers": [noise] * 42}  # ~860 KB, as the probe sent
            with httpx.Client(timeout=120) as client:
                client.get(f"{base}/login/")  # every worker warm before the timing
            for label, body in (("the probe's", probe), ("largest accepted", largest)):
                burst_with_logins(url, headers, body, burst, base, server.pid, label)
        finally:
            stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=6)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--slow-before", action="store_true", help="also time the old path on noise (minutes)")
    parser.add_argument("--part", choices=["encoding", "api", "both"], default="both")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    if args.part in ("encoding", "both"):
        bench_encoding(args.runs, args.slow_before)
    if args.part in ("api", "both"):
        bench_api(args.runs, args.burst, args.workers)


if __name__ == "__main__":
    main()
