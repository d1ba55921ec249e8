"""Benchmark: Label Studio and Annotate side by side, in one run, under the same closed-loop labelers.

Label Studio (1.23.x from PyPI, a benchmark-only dependency: never in requirements*.txt, never in CI) is
installed with uWSGI into its own virtualenv, --peer-dir/venv (default var/peer/venv; kept between runs).
It runs as its Docker image's `label-studio-uwsgi` mode does (deploy/uwsgi.ini: uWSGI's HTTP router, one
thread per process, lazy apps, thunder lock), with the settings its docs give for production: PostgreSQL
(DJANGO_DB=default, POSTGRE_*) on its own database, `bench_labelstudio`, on DATABASE_URL's server, and
DEBUG off. It gets as many worker processes as Annotate's gunicorn (--workers; uwsgi.ini's `cheaper`
mode, which starts fewer and adds some under load, is left out so that both have all of theirs from the
start). `--ls-server default` runs it instead the way `label-studio start` does (its default server:
Django's runserver, one process with a thread per request, no autoreload), with the same settings,
environment and database, so that the production configuration can be compared with the default one.
Annotate runs as bench/load.py runs it (gunicorn, DEBUG=0), on its own database `bench_peer`.

For each client count, each platform gets a fresh project of the same 5,000 prompts x 9 answers
(bench.load.sample_prompts), overlap 3: an Annotate ranking queue; a Label Studio project with the
List + Ranker labeling config its docs give for ranking a list, maximum_annotations 3, imported through
its API. Then --duration seconds of closed-loop clients, no think time, Annotate first, then Label Studio:
- Annotate: bench.load.Labeler (logged in before the clock starts), never skipping: next task (the
  redirect, then the task page: what a labeler needs to see the task) -> submit a random ranking.
- Label Studio: one user per client with a legacy API token: GET /api/projects/<id>/next (what its
  labeling stream calls) -> POST /api/tasks/<id>/annotations/ with a Ranker result (a random order).
It prints cycles/s (stored rankings per second), p50/p95 of each step and of the whole "next task" step,
the server's CPU per cycle (web processes and the PostgreSQL server, bench.load.CpuMeter), and the
ratios Annotate / Label Studio. Each step's stored labels are checked: Annotate's with bench.load's
checks, Label Studio's by counting its annotations against the 201 answers and per task against its
overlap; exits 1 when a check fails.

Run from the project root, under the benchmark lock:
  flock /work/bench.lock env DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate \\
      .venv/bin/python -m bench.peer_labelstudio [--clients 1,10,25,50] [--duration 120] [--peer-dir var/peer] \\
      [--ls-server uwsgi|default]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import bench_url, connect, recreate
from bench.load import (
    BIN,
    ROOT,
    Call,
    CpuMeter,
    Labeler,
    Plan,
    check,
    create_labelers,
    create_queue,
    free_port,
    percentile,
    platform_env,
    postmaster_pid,
    print_checks,
    read_facts,
    sample_prompts,
    server_ran_clean,
    stop,
    wait_healthy,
)

LABEL_STUDIO = "label-studio==1.23.*"
# Label Studio 1.23 asks for sentry-sdk>=2.16 with no upper bound, and its settings pass sentry_sdk.init an
# option that sentry-sdk 3.0 no longer takes (TypeError: Unknown option 'send_default_pii').
LS_PINS = ["sentry-sdk>=2.16,<3"]
# The List + Ranker pair of Label Studio's docs (tags/ranker): the labeler drags the answers into order.
RANKING_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <List name="answers" value="$answers" title="Answers"/>
  <Ranker name="rank" toName="answers"/>
</View>"""
# Users, their organization (legacy tokens on) and their API tokens, made in Label Studio's own process.
LS_USERS = """
import json
from jwt_auth.models import JWTSettings
from organizations.functions import create_organization
from rest_framework.authtoken.models import Token
from users.models import User
owner = User.objects.create_superuser(email="bench-owner@example.com", password=None)
org = create_organization(title="bench", created_by=owner, legacy_api_tokens_enabled=True)
JWTSettings.objects.update_or_create(organization=org, defaults={{"legacy_api_tokens_enabled": True}})
owner.active_organization = org
owner.save()
labelers = []
for n in range({count}):
    user = User.objects.create_user(email=f"labeler-{{n:02d}}@example.com", password=None)
    org.add_user(user)
    user.active_organization = org
    user.save()
    labelers.append(Token.objects.get_or_create(user=user)[0].key)
print("TOKENS " + json.dumps({{"owner": Token.objects.get_or_create(user=owner)[0].key, "labelers": labelers}}))
"""


# --- Label Studio: install, serve, fill ------------------------------------------------------------


def install_label_studio(peer_dir: Path) -> tuple[Path, Path, str]:
    """The virtualenv's python, Label Studio's package directory and its version; installs them if missing."""
    python = peer_dir / "venv" / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m, label_studio, os; "
             "print(os.path.dirname(label_studio.__file__), m.version('label-studio'))"]  # fmt: skip
    installed = (python.parent / "uwsgi").exists() and python.exists()
    if installed and subprocess.run(probe, capture_output=True).returncode == 0:
        found = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()
        return python, Path(found[0]), found[1]
    print(f"installing {LABEL_STUDIO} and uwsgi into {peer_dir / 'venv'} (a few minutes)", flush=True)
    peer_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(peer_dir / "venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", LABEL_STUDIO, *LS_PINS, "uwsgi"], check=True)
    found = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()
    return python, Path(found[0]), found[1]


def label_studio_env(config: dict, database: str, data_dir: Path, server: str = "uwsgi") -> dict[str, str]:
    """Label Studio's production settings (its docs: PostgreSQL, DEBUG off), and nothing of Annotate's.

    APP_WEBSERVER tells it which server runs it: "uwsgi" as its Docker image sets it, or left unset (its
    default, "django") for `label-studio start`."""
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "core.settings.label_studio", "DJANGO_DB": "default",
        "POSTGRE_NAME": database, "POSTGRE_USER": config.get("USER") or "postgres",
        "POSTGRE_PASSWORD": config.get("PASSWORD") or "", "POSTGRE_HOST": config.get("HOST") or "127.0.0.1",
        "POSTGRE_PORT": str(config.get("PORT") or 5432), "DEBUG": "false", "LOG_LEVEL": "WARNING",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "APP_WEBSERVER": "uwsgi",
        "SECRET_KEY": secrets.token_urlsafe(50),
    }  # fmt: skip
    if server != "uwsgi":
        del env["APP_WEBSERVER"]
    return env


def uwsgi_command(python: Path, *, workers: int, port: int) -> list[str]:
    """uWSGI as Label Studio's deploy/uwsgi.ini starts it, with `workers` processes and no cheaper mode."""
    return [
        str(python.parent / "uwsgi"), "--http", f"127.0.0.1:{port}", "--module", "core.wsgi:application",
        "--master", "--processes", str(workers), "--threads", "1", "--single-interpreter", "--enable-threads",
        "--thunder-lock", "--lazy-apps", "--need-app", "--die-on-term", "--buffer-size", "65535",
        "--post-buffering", "4096", "--http-timeout", "300", "--harakiri", "120", "--max-requests", "5000",
        "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception", "--disable-logging", "--log-5xx",
        "--env", "APP_WEBSERVER=uwsgi",
    ]  # fmt: skip


def label_studio_start_command(python: Path, *, port: int) -> list[str]:
    """Its default server: `label-studio start` runs Django's runserver (threaded, --noreload) in its process."""
    return [str(python.parent / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def wait_label_studio(base_url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"Label Studio exited ({process.returncode}):\n{log.read_text()[-5000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"Label Studio did not answer /health in {timeout:.0f} s:\n{log.read_text()[-5000:]}")


def label_studio_project(base_url: str, owner_token: str, *, title: str, prompts: int, answers: int,
                         overlap: int) -> int:  # fmt: skip
    """A ranking project of `sample_prompts`, made and filled through Label Studio's API; returns its id."""
    import httpx

    headers = {"Authorization": f"Token {owner_token}", "Connection": "close"}  # see LabelStudioLabeler
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as api:
        settings = {"title": title, "label_config": RANKING_CONFIG, "maximum_annotations": overlap,
                    "overlap_cohort_percentage": 100}  # fmt: skip
        made = api.post("/api/projects/", json=settings)
        made.raise_for_status()
        project_id = made.json()["id"]
        tasks = [
            {"prompt": text, "answers": [{"id": f"a{j}", "title": model, "body": reply}
                                         for j, (reply, model) in enumerate(replies)]}
            for text, replies in sample_prompts(prompts, answers)
        ]  # fmt: skip
        imported = api.post(f"/api/projects/{project_id}/import", json=tasks)
        imported.raise_for_status()
        count = api.get(f"/api/projects/{project_id}/").json()["task_number"]
        if count != prompts:
            raise SystemExit(f"Label Studio imported {count} tasks of {prompts}: {imported.text[:500]}")
    return project_id


class LabelStudioLabeler:
    """One Label Studio labeler: its API token, then next task -> annotation, as its labeling stream does."""

    def __init__(self, number: int, *, base_url: str, token: str, project_id: int, log: list[Call], seed: int):
        import httpx

        self.number, self.project_id, self.log = number, project_id, log
        self.rng = random.Random(seed)
        # uWSGI's HTTP router closes each connection without saying so; gunicorn's sync workers say it, so
        # Annotate's clients also open a connection per request.
        headers = {"Authorization": f"Token {token}", "Connection": "close"}
        self.client = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120)

    async def call(self, endpoint: str, method: str, url: str, *, ok: int, task=None, **kwargs):
        import httpx

        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            ms = (time.perf_counter() - started) * 1000
            self.log.append(Call(self.number, endpoint, 0, ms, task, "error", message=repr(error), at=time.monotonic()))
            return None
        ms = (time.perf_counter() - started) * 1000
        outcome = ("stored" if endpoint == "submit" else "ok") if response.status_code == ok else "error"
        message = "" if outcome != "error" else response.text[:300]
        self.log.append(Call(self.number, endpoint, response.status_code, ms, task, outcome, message=message,
                             at=time.monotonic()))  # fmt: skip
        return response if outcome != "error" else None

    async def label(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            task = await self.call("next", "GET", f"/api/projects/{self.project_id}/next", ok=200)
            if task is None:
                await asyncio.sleep(1)  # no task left, or an error: the log has it
                continue
            task = task.json()
            order = [answer["id"] for answer in task["data"]["answers"]]
            self.rng.shuffle(order)
            result = [{"from_name": "rank", "to_name": "answers", "type": "ranker", "origin": "manual",
                       "value": {"ranker": {"answers": order}}}]  # fmt: skip
            body = {"result": result, "lead_time": self.rng.uniform(2, 120), "project": self.project_id}
            await self.call("submit", "POST", f"/api/tasks/{task['id']}/annotations/?project={self.project_id}",
                            ok=201, task=task["id"], json=body)  # fmt: skip


def label_studio_checks(log: list[Call], config: dict, database: str, project_id: int) -> list[tuple[str, list]]:
    """Its stored annotations against the clients' log: one per 201, none past a task's overlap."""
    with connect(config, database) as db:
        stored = db.execute("SELECT count(*) FROM task_completion WHERE project_id = %s", [project_id]).fetchone()[0]
        overfull = db.execute(
            "SELECT t.id, count(a.id) FROM task t JOIN task_completion a ON a.task_id = t.id JOIN project p"
            " ON p.id = t.project_id WHERE t.project_id = %s GROUP BY t.id, p.maximum_annotations"
            " HAVING count(a.id) > p.maximum_annotations", [project_id],
        ).fetchall()  # fmt: skip
    told = sum(1 for c in log if c.endpoint == "submit" and c.outcome == "stored")
    return [
        ("no 5xx answer", [f"{c.endpoint} {c.assignment}: HTTP {c.status}" for c in log if c.status >= 500]),
        ("no transport error or unexpected answer",
         [f"{c.endpoint} {c.assignment}: HTTP {c.status} {c.message[:120]}" for c in log if c.outcome == "error"]),
        ("every annotation answered 201 is stored, and only those",
         [] if stored == told else [f"{told} answered 201, {stored} stored"]),
        ("no task has more annotations than its overlap", [f"task {pk}: {n}" for pk, n in overfull]),
    ]  # fmt: skip


# --- one step: N clients on one platform -----------------------------------------------------------


@dataclass
class Step:
    platform: str
    clients: int
    seconds: float
    cycles: int
    next_ms: list[float]  # the whole "next task" step of each cycle
    submit_ms: list[float]
    cpu_per_cycle: float | None
    ok: bool

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds


async def drive(labelers: list, duration: float, meter: CpuMeter) -> float:
    """Every labeler's loop for `duration` seconds between two CPU samples; returns the seconds it took."""
    deadline = time.monotonic() + duration
    meter("start")
    started = time.perf_counter()
    await asyncio.gather(*(labeler.label(deadline) for labeler in labelers))
    meter("end")
    return time.perf_counter() - started


def next_task_ms(log: list[Call]) -> list[float]:
    """Annotate's "next task" per cycle: the task page, plus the `next` redirect before it when there was one (a
    labeler's first task; after that, the submit's redirect is the next task's page, which the submit leased)."""
    pending: dict[int, float] = {}
    combined = []
    for call in log:
        if call.endpoint == "next" and call.status == 302:
            pending[call.labeler] = call.ms
        elif call.endpoint == "task page":
            combined.append(pending.pop(call.labeler, 0.0) + call.ms)
    return combined


def annotate_step(*, clients: int, duration: float, base_url: str, queue_id: int, parts: dict, seed: int) -> Step:
    log: list[Call] = []
    plan = Plan(p_skip=0.0, p_expire=0.0, p_double=0.0, lease_seconds=30)
    labelers = [Labeler(n, base_url=base_url, queue_id=queue_id, plan=plan, log=log, seed=seed * 1000 + n)
                for n in range(clients)]  # fmt: skip
    meter = CpuMeter(parts)

    async def run() -> float:
        logged_in = await asyncio.gather(*(labeler.login() for labeler in labelers))
        if not all(logged_in):
            raise SystemExit("Annotate refused a bench labeler's login")
        log.clear()  # the logins are not the labeling cycle
        try:
            return await drive(labelers, duration, meter)
        finally:
            await asyncio.gather(*(labeler.client.aclose() for labeler in labelers))

    seconds = asyncio.run(run())
    stored = [c for c in log if c.endpoint == "submit" and c.outcome == "stored"]
    cycles = len(stored)
    cpu = meter.report(cycles)
    ok = print_checks(check(log, read_facts(queue_id))) and cycles > 0
    return Step("Annotate", clients, seconds, cycles, next_task_ms(log), [c.ms for c in stored], cpu, ok)


def label_studio_step(*, clients: int, duration: float, base_url: str, tokens: list[str], project_id: int,
                      parts: dict, seed: int, config: dict, database: str) -> Step:  # fmt: skip
    log: list[Call] = []
    labelers = [LabelStudioLabeler(n, base_url=base_url, token=tokens[n], project_id=project_id, log=log,
                                   seed=seed * 1000 + n) for n in range(clients)]  # fmt: skip
    meter = CpuMeter(parts)

    async def run() -> float:
        try:
            return await drive(labelers, duration, meter)
        finally:
            await asyncio.gather(*(labeler.client.aclose() for labeler in labelers))

    seconds = asyncio.run(run())
    cycles = sum(1 for c in log if c.endpoint == "submit" and c.outcome == "stored")
    cpu = meter.report(cycles)
    ok = print_checks(label_studio_checks(log, config, database, project_id)) and cycles > 0
    next_ms = [c.ms for c in log if c.endpoint == "next" and c.outcome == "ok"]
    submit_ms = [c.ms for c in log if c.endpoint == "submit" and c.outcome == "stored"]
    return Step("Label Studio", clients, seconds, cycles, next_ms, submit_ms, cpu, ok)


# --- the table ------------------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def print_table(steps: list[Step]) -> None:
    print("\n" + " ".join(f"{h:>{w}}" for h, w in [
        ("platform", 13), ("clients", 7), ("cycles/s", 9), ("next p50", 9), ("next p95", 9), ("submit p50", 10),
        ("submit p95", 10), ("CPU ms/cycle", 12)]))  # fmt: skip
    for s in steps:
        cpu = f"{s.cpu_per_cycle * 1000:12.1f}" if s.cpu_per_cycle else f"{'-':>12}"
        print(f"{s.platform:>13} {s.clients:>7} {s.rate:>9.1f} {_p(s.next_ms, 50):>9.1f} {_p(s.next_ms, 95):>9.1f} "
              f"{_p(s.submit_ms, 50):>10.1f} {_p(s.submit_ms, 95):>10.1f} {cpu}")  # fmt: skip
    print("\nAnnotate / Label Studio (latencies: Annotate's as a share of Label Studio's):")
    print(" ".join(f"{h:>{w}}" for h, w in [("clients", 7), ("cycles/s", 9), ("next p50", 9), ("next p95", 9),
                                             ("submit p50", 10), ("submit p95", 10), ("CPU/cycle", 10)]))  # fmt: skip
    for ours, theirs in zip(steps[0::2], steps[1::2], strict=True):
        def share(mine: list[float], other: list[float], q: float) -> str:
            return f"{_p(mine, q) / _p(other, q) * 100:.1f}%" if mine and other else "-"

        cpu = (f"{ours.cpu_per_cycle / theirs.cpu_per_cycle * 100:.1f}%"
               if ours.cpu_per_cycle and theirs.cpu_per_cycle else "-")  # fmt: skip
        ratio = f"{ours.rate / theirs.rate:.1f}x" if theirs.rate else "-"
        print(f"{ours.clients:>7} {ratio:>9} {share(ours.next_ms, theirs.next_ms, 50):>9} "
              f"{share(ours.next_ms, theirs.next_ms, 95):>9} {share(ours.submit_ms, theirs.submit_ms, 50):>10} "
              f"{share(ours.submit_ms, theirs.submit_ms, 95):>10} {cpu:>10}")  # fmt: skip


# --- main ----------------------------------------------------------------------------------------


def client_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clients takes numbers separated by commas, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--clients: each count must be 1 or more")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=client_counts, default=[1, 10, 25, 50], help="default 1,10,25,50")
    parser.add_argument("--duration", type=float, default=120, help="seconds per platform and step (default 120)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="web worker processes of each platform (default 2 x cores + 1, as bench.load)")
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--answers", type=int, default=9)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--peer-dir", type=Path, default=ROOT / "var" / "peer",
                        help="where Label Studio's virtualenv lives (default var/peer)")  # fmt: skip
    parser.add_argument("--database", default="bench_peer", help="Annotate's database (dropped and created)")
    parser.add_argument("--ls-database", default="bench_labelstudio", help="Label Studio's (dropped and created)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ls-server", choices=["uwsgi", "default"], default="uwsgi",
                        help="Label Studio's server: uwsgi (its Docker production mode, default) or default "
                             "(what `label-studio start` runs: Django's runserver, one process)")  # fmt: skip
    args = parser.parse_args(argv)

    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    if args.ls_database in (config["NAME"], args.database):
        raise SystemExit("--ls-database must differ from DATABASE_URL's database and --database: the bench drops it")
    python, ls_package, ls_version = install_label_studio(args.peer_dir.resolve())
    most = max(args.clients)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    processes: list[subprocess.Popen] = []
    recreate(config, args.database)
    recreate(config, args.ls_database)
    env = platform_env(database_url=url, redis_url=args.redis_url, var_dir=var_dir)
    os.environ.update({**env, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "annotate.settings"})
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    ok = True
    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        create_labelers(most)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                       check=True)  # fmt: skip
        ls_env = label_studio_env(config, args.ls_database, var_dir / "label-studio", args.ls_server)
        subprocess.run([str(python), "manage.py", "migrate", "--noinput", "-v0"], cwd=ls_package, env=ls_env,
                       check=True)  # fmt: skip
        made = subprocess.run([str(python), "manage.py", "shell", "-c", LS_USERS.format(count=most)],
                              cwd=ls_package, env=ls_env, check=True, capture_output=True, text=True)  # fmt: skip
        tokens = json.loads(made.stdout.split("TOKENS ", 1)[1])
        print(f"Annotate ({args.database!r}) and Label Studio {ls_version} ({args.ls_database!r}) migrated, "
              f"{most} labelers each, in {time.perf_counter() - started:.0f} s")  # fmt: skip

        ours_port, theirs_port = free_port(), free_port()
        ours_url, theirs_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}"
        uwsgi = args.ls_server == "uwsgi"
        logs = [var_dir / "gunicorn.log", var_dir / ("uwsgi.log" if uwsgi else "label-studio-start.log")]
        theirs = (uwsgi_command(python, workers=args.workers, port=theirs_port) if uwsgi
                  else label_studio_start_command(python, port=theirs_port))  # fmt: skip
        commands = [
            ([str(BIN / "gunicorn"), "annotate.wsgi", "--workers", str(args.workers), "--bind",
              f"127.0.0.1:{ours_port}"], ROOT, env),
            (theirs, ls_package, ls_env),
        ]  # fmt: skip
        for (command, cwd, command_env), log in zip(commands, logs, strict=True):
            with log.open("wb") as out:
                processes.append(subprocess.Popen(command, cwd=cwd, env=command_env, stdout=out,
                                                  stderr=subprocess.STDOUT))  # fmt: skip
        wait_healthy(ours_url, processes[:1], logs[:1])
        wait_label_studio(theirs_url, processes[1], logs[1])
        postgres = postmaster_pid()
        ls_server = (f"uwsgi, {args.workers} processes x 1 thread" if uwsgi
                     else "`label-studio start` (Django's runserver: 1 process, a thread per request)")  # fmt: skip
        print(f"Annotate: gunicorn, {args.workers} workers; Label Studio: {ls_server}; {args.duration:g} s each "
              f"per step; {os.cpu_count()} cores")  # fmt: skip

        steps: list[Step] = []
        for clients in args.clients:
            queue_id = create_queue(prompts=args.prompts, answers=args.answers, overlap=args.overlap,
                                    lease_seconds=30, name=f"peer {clients} clients")  # fmt: skip
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # as autovacuum would within a minute of the bulk insert
            print(f"\n== Annotate, {clients} clients", flush=True)
            steps.append(annotate_step(
                clients=clients, duration=args.duration, base_url=ours_url, queue_id=queue_id, seed=args.seed,
                parts={"web (gunicorn)": processes[0].pid, "PostgreSQL (whole server)": postgres}))  # fmt: skip
            project_id = label_studio_project(
                theirs_url, tokens["owner"], title=f"peer {clients} clients", prompts=args.prompts,
                answers=args.answers, overlap=args.overlap)  # fmt: skip
            with connect(config, args.ls_database) as db:
                db.execute("ANALYZE")
            print(f"\n== Label Studio ({args.ls_server} server), {clients} clients", flush=True)
            steps.append(label_studio_step(
                clients=clients, duration=args.duration, base_url=theirs_url, tokens=tokens["labelers"],
                project_id=project_id, seed=args.seed, config=config, database=args.ls_database,
                parts={f"web ({'uwsgi' if uwsgi else 'label-studio start'})": processes[1].pid,
                       "PostgreSQL (whole server)": postgres}))  # fmt: skip
            ok = ok and all(step.ok for step in steps[-2:])
        print_table(steps)
        for process, log in zip(processes, logs, strict=True):
            ok = server_ran_clean(process, log) and ok
    finally:
        for process in processes:
            stop(process)
        connections.close_all()
        shutil.rmtree(var_dir, ignore_errors=True)
        recreate(config, args.database, drop_only=True)
        recreate(config, args.ls_database, drop_only=True)
    print("\nall checks passed" if ok else "\nA CHECK FAILED: see FAIL above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
