"""Benchmark: the platform under simulated labelers, as in production, then a check that no label was lost.

It creates its own PostgreSQL database, `bench_load` (--database), on the server of DATABASE_URL (dropped
and created again, dropped at the end unless --keep), migrates it and fills it: 50 labelers and one
ranking queue of 5,000 prompts x 9 answers, overlap 3, lease 30 s (the form's minimum, so that leases do
expire during the run). Then it starts the platform as README "Running it for real" does: collectstatic,
gunicorn (2 x cores + 1 sync workers, DEBUG=0) and one Celery worker on Redis db 5 (only that db is
emptied), and waits for /healthz.

Each simulated labeler is an asyncio coroutine with its own HTTP client (httpx) and cookies. The first
--form-logins of them (default 50) log in through the login form, spread over --ramp seconds; the others
arrive signed in, with a session the bench made as a login does (Django's force_login), as labelers who
signed in earlier in their two-week session would: 1,000 logins at once would be ~500 s of PBKDF2, a morning's
logins, not a steady state. Then each loops: task page (answer ids from its data-answer-id attributes; the first
one through next task, later ones where the last submit or skip sent them, which leased it) -> think (--think
seconds +-50%, none by default) -> skip (5%), let the lease expire (3%: wait past it, then submit late or
abandon the task), or submit a random ranking with ties, some ratings and flags; 5% of submits are sent twice
(half of those both at once, as a double click). Every request is logged: endpoint, status, latency, assignment,
what was sent and the outcome, read from the message the server queued for the next page (Django's messages
cookie): stored, already stored, refused (e.g. a late
submit whose prompt is full).

It prints requests/s and p50/p95/p99 latency per endpoint (and again for the steady state after the
logins), the server's CPU time per labeler cycle in that window (web processes, the worker and PostgreSQL,
from their own /proc counters, exited processes included, divided by the cycles: submits and skips), then
checks the database against the log and
exits 1 when any check fails: every submit answered "stored" is stored exactly once, with the groups sent;
a repeated submit is stored once; no ranking is stored that the client was not told about; no task has
more labels than its overlap; no labeler labeled a prompt twice; no 5xx and no transport error. Last, the
SQL queries of one request of each endpoint, counted with Django's test client in this process.

Run from the project root (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379):
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.load [--duration 300]
  ... -m bench.load --labelers 1000 --think 30 --duration 300     (1,000 labelers at a human pace)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import bench_url, drop, recreate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "bench-load-pw"
ANSWER_ID = re.compile(r'data-answer-id="(\d+)"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
TASK_URL = re.compile(r"/tasks/(\d+)/$")
SKIP_REASONS = ["unclear", "harmful", "needs_expertise", "other"]
FLAGS = ["fails_instruction", "hallucination", "harmful"]
SUBMITS = ("submit", "submit again", "submit late")
ENDPOINTS = ("login page", "login", "next", "task page", *SUBMITS, "skip")


# --- the client's log -----------------------------------------------------------------------------


@dataclass
class Call:
    labeler: int
    endpoint: str
    status: int  # 0: no HTTP answer (transport error)
    ms: float
    assignment: int | None = None
    outcome: str = ""  # submits: stored | already | refused | invalid | error; skips: skipped | refused | error
    groups: list | None = None
    message: str = ""
    at: float = 0.0  # time.monotonic() when the answer came (the steady-state window is cut on it)


@dataclass
class Plan:
    p_skip: float
    p_expire: float
    p_double: float
    lease_seconds: int
    think: float = 0.0  # mean seconds a labeler spends on a task page (uniform, +-50%); 0: none
    ramp: float = 0.0  # labelers log in spread over this many seconds


def random_groups(answer_ids: list[int], rng: random.Random) -> list[list[int]]:
    """A random ranking of the answers, best first, with some ties."""
    groups: list[list[int]] = []
    for answer_id in rng.sample(answer_ids, len(answer_ids)):
        if groups and rng.random() < 0.25:
            groups[-1].append(answer_id)
        else:
            groups.append([answer_id])
    return groups


def message_outcome(response) -> tuple[str, str]:
    """The outcome of a submit or skip from the last message it queued (Django's `messages` cookie)."""
    from django.contrib.messages import constants
    from django.contrib.messages.storage.cookie import CookieStorage

    if response.status_code >= 500:
        return "error", f"HTTP {response.status_code}"
    if response.status_code == 400:
        return "invalid", "HTTP 400"
    if response.status_code != 302:
        return "error", f"HTTP {response.status_code}"
    messages = CookieStorage(None)._decode(response.cookies.get("messages", "").strip('"')) or []
    if not messages:
        return "error", "no message"
    last = messages[-1]
    if last.level == constants.SUCCESS:
        return "stored", last.message
    if last.level == constants.ERROR:
        return "refused", last.message
    if "already submitted" in last.message:
        return "already", last.message
    if last.message.startswith("Skipped"):
        return "skipped", last.message
    return "error", last.message


class Labeler:
    """One simulated labeler: an HTTP client with its own cookies, looping with no think time."""

    def __init__(self, number: int, *, base_url: str, queue_id: int, plan: Plan, log: list[Call], seed: int,
                 session: tuple[str, str] | None = None):
        import httpx

        self.number, self.queue_id, self.plan, self.log = number, queue_id, plan, log
        self.rng = random.Random(seed)
        self.client = httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=120)
        self.signed_in = session is not None
        if session is not None:
            self.client.cookies.set(*session)

    async def call(self, endpoint: str, method: str, url: str, *, assignment=None, groups=None, **kwargs):
        import httpx

        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            ms = (time.perf_counter() - started) * 1000
            self.log.append(Call(self.number, endpoint, 0, ms, assignment, "error", groups, repr(error),
                                 time.monotonic()))  # fmt: skip
            return None
        ms = (time.perf_counter() - started) * 1000
        entry = Call(self.number, endpoint, response.status_code, ms, assignment, groups=groups, at=time.monotonic())
        if endpoint in SUBMITS or endpoint == "skip":
            entry.outcome, entry.message = message_outcome(response)
        elif endpoint == "login":
            entry.outcome = "ok" if response.status_code == 302 else "error"  # 200: the form again, refused
            entry.message = "" if response.status_code == 302 else "login refused"
        else:
            entry.outcome = "ok" if response.status_code < 400 else "error"
        self.log.append(entry)
        self.last = entry
        return response

    async def login(self) -> bool:
        page = await self.call("login page", "GET", "/login/")
        if page is None or not CSRF.search(page.text):
            return False
        form = {"username": f"labeler-{self.number:02d}", "password": PASSWORD,
                "csrfmiddlewaretoken": CSRF.search(page.text).group(1)}  # fmt: skip
        done = await self.call("login", "POST", "/login/", data=form)
        return done is not None and done.status_code == 302

    async def run(self, deadline: float, labelers: int) -> None:
        async with self.client:
            await asyncio.sleep(self.plan.ramp * self.number / labelers)  # a login storm is not the steady state
            if self.signed_in or await self.login():
                await self.label(deadline)

    async def label(self, deadline: float) -> None:
        """The labeling loop of a logged-in labeler, until `deadline`. A submit or skip sends the labeler straight
        to the next task's page (it leased it); `next` is asked when it sends them elsewhere, or nowhere."""
        next_url = f"/queues/{self.queue_id}/next/"
        task_url = None
        while time.monotonic() < deadline:
            if task_url is None:
                leased = await self.call("next", "GET", next_url)
                if leased is None or leased.status_code != 302:
                    await asyncio.sleep(1)  # no task left, or an error: the log has it
                    continue
                task_url = leased.headers["location"]
                if TASK_URL.search(task_url) is None:  # e.g. sent to the login page: the checks must see it
                    self.last.outcome, self.last.message = "error", f"to {task_url}"
                    task_url = None
                    await asyncio.sleep(1)
                    continue
            assignment = int(TASK_URL.search(task_url).group(1))
            page = await self.call("task page", "GET", f"/tasks/{assignment}/", assignment=assignment)
            task_url = None
            if page is None or page.status_code != 200:
                continue
            location = await self.work(assignment, page.text, deadline)
            if location is not None and TASK_URL.search(location):
                task_url = location
            elif location is not None:
                next_url = location

    async def work(self, assignment: int, html: str, deadline: float) -> str | None:
        """Skip, let the lease expire, or submit (sometimes twice); returns where the server sends us next."""
        rng, plan = self.rng, self.plan
        token = CSRF.search(html).group(1)
        answer_ids = list(dict.fromkeys(int(pk) for pk in ANSWER_ID.findall(html)))
        if plan.think:  # reading the answers and ranking them
            await asyncio.sleep(max(0.0, min(plan.think * rng.uniform(0.5, 1.5), deadline - time.monotonic())))
        draw = rng.random()
        if draw < plan.p_skip:
            reason = rng.choice(SKIP_REASONS)
            form = {"reason": reason, "note": "bench" if reason == "other" else "", "csrfmiddlewaretoken": token}
            done = await self.call("skip", "POST", f"/tasks/{assignment}/skip/", assignment=assignment, data=form)
            return done.headers.get("location") if done is not None else None
        endpoint = "submit"
        if draw < plan.p_skip + plan.p_expire:
            # Let the lease lapse; then half the time submit late, half the time abandon the task.
            await asyncio.sleep(max(0.0, min(plan.lease_seconds + 2, deadline - time.monotonic())))
            if rng.random() < 0.5 or time.monotonic() >= deadline:
                return None
            endpoint = "submit late"
        groups = random_groups(answer_ids, rng)
        form = {"groups": json.dumps(groups), "time_spent_ms": str(rng.randint(2_000, 120_000)),
                "csrfmiddlewaretoken": token}  # fmt: skip
        for answer_id in answer_ids:
            if rng.random() < 0.5:
                form[f"rating-{answer_id}"] = str(rng.randint(1, 7))
        flagged = rng.choice(answer_ids)
        if rng.random() < 0.1:
            form[f"flag-{flagged}"] = rng.choice(FLAGS)
        url = f"/tasks/{assignment}/submit/"
        send = {"assignment": assignment, "groups": groups, "data": form}
        if endpoint == "submit" and rng.random() < plan.p_double:
            if rng.random() < 0.5:  # a double click: both in flight at once
                first, _ = await asyncio.gather(
                    self.call("submit", "POST", url, **send), self.call("submit again", "POST", url, **send)
                )
            else:  # submitted again after the answer (back button, resend)
                first = await self.call("submit", "POST", url, **send)
                await self.call("submit again", "POST", url, **send)
        else:
            first = await self.call(endpoint, "POST", url, **send)
        return first.headers.get("location") if first is not None else None


async def run_labelers(*, labelers: int, duration: float, base_url: str, queue_id: int, plan: Plan, seed: int,
                       on_window=None, sessions: dict[int, tuple[str, str]] | None = None):
    """The crowd for `duration` seconds; `on_window(start)` is called once the ramp is over, then again at the end.
    sessions: labeler number -> session cookie (name, value) for those who arrive signed in."""
    log: list[Call] = []
    deadline = time.monotonic() + duration
    started = time.perf_counter()
    sessions = sessions or {}
    crowd = [
        Labeler(n, base_url=base_url, queue_id=queue_id, plan=plan, log=log, seed=seed * 1000 + n,
                session=sessions.get(n))
        for n in range(labelers)
    ]  # fmt: skip

    async def window() -> None:
        await asyncio.sleep(min(plan.ramp, duration))
        if on_window:
            on_window("start")
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        if on_window:
            on_window("end")

    await asyncio.gather(window(), *(labeler.run(deadline, labelers) for labeler in crowd))
    return log, time.perf_counter() - started


# --- figures -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def print_figures(log: list[Call], elapsed: float) -> None:
    print(f"\n{len(log):,} requests in {elapsed:.1f} s: {len(log) / elapsed:.1f} requests/s")
    heads = ["count", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    print(f"{'endpoint':<13} {heads[0]:>7} {heads[1]:>7} " + " ".join(f"{h:>8}" for h in heads[2:]) + "  statuses")
    by_endpoint = defaultdict(list)
    for call in log:
        by_endpoint[call.endpoint].append(call)
    for endpoint in ENDPOINTS:
        calls = by_endpoint.get(endpoint, [])
        if not calls:
            continue
        ms = [c.ms for c in calls]
        statuses = Counter(c.status for c in calls)
        outcomes = Counter(c.outcome for c in calls if c.outcome not in ("", "ok"))
        print(f"{endpoint:<13} {len(calls):>7,} {len(calls) / elapsed:>7.1f} {percentile(ms, 50):>8.1f} "
              f"{percentile(ms, 95):>8.1f} {percentile(ms, 99):>8.1f} {max(ms):>8.1f}  "
              f"{dict(sorted(statuses.items()))} {dict(outcomes) if outcomes else ''}")  # fmt: skip
    refusals = Counter(c.message for c in log if c.outcome == "refused")
    for message, count in refusals.most_common():
        print(f"refused {count:,} times: {message}")
    loops = sum(1 for c in log if c.endpoint == "task page" and c.status == 200)
    print(f"tasks opened {loops:,} ({loops / elapsed:.1f}/s); median of all requests "
          f"{statistics.median(c.ms for c in log):.1f} ms")  # fmt: skip


# --- server CPU ------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, own CPU ticks, reaped children's CPU ticks) of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return int(fields[1]), utime + stime, cutime + cstime


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and its descendants, the exited ones included.

    A live process counts its own time plus its reaped children's (which the kernel adds to the parent
    when it waits for them), so a gunicorn worker or PostgreSQL backend that exited still counts.
    """
    stats = {pid: st for pid in (int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit())
             if (st := _stat(pid)) is not None}  # fmt: skip
    children = defaultdict(list)
    for pid, (parent, _, _) in stats.items():
        children[parent].append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1] + stats[pid][2]
            todo.extend(children[pid])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat), for a cross-check."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def postmaster_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data_directory = Path(cursor.fetchone()[0])
    return int((data_directory / "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """Server CPU between the start and the end of the steady-state window: web, worker, PostgreSQL."""

    def __init__(self, parts: dict[str, int]):
        self.parts, self.samples = parts, {}

    def __call__(self, moment: str) -> None:
        sample = {name: tree_cpu(pid) for name, pid in self.parts.items()}
        sample["machine"] = machine_busy_seconds()
        sample["bench client"] = sum(os.times()[:2])
        self.samples[moment] = (time.monotonic(), sample)

    def report(self, cycles: int) -> float | None:
        if "start" not in self.samples or "end" not in self.samples:
            return None
        (t0, start), (t1, end) = self.samples["start"], self.samples["end"]
        used = {name: end[name] - start[name] for name in start}
        server = sum(used[name] for name in self.parts)
        print(f"\nserver CPU in the steady-state window ({t1 - t0:.0f} s, {cycles:,} labeler cycles):")
        for name in [*self.parts, "bench client", "machine"]:
            per = f"{used[name] / cycles * 1000:7.1f} ms/cycle" if cycles else ""
            print(f"  {name:<28} {used[name]:8.1f} s  {used[name] / (t1 - t0) * 100:5.0f}% of a core  {per}")
        if not cycles:
            return None
        print(f"  server total (web + worker + PostgreSQL): {server / cycles * 1000:.1f} ms per cycle "
              "(goal: 15 ms or less)")  # fmt: skip
        return server / cycles


# --- the checks ------------------------------------------------------------------------------------


@dataclass
class Facts:
    """What the database holds for the bench queue."""

    rankings: dict[int, list[list]] = field(default_factory=dict)  # assignment id -> groups of each stored row
    tasks: list[tuple[int, int, int, int]] = field(default_factory=list)  # id, overlap, submitted_count, rankings
    labeled_twice: list[tuple[int, int, int]] = field(default_factory=list)  # labeler, prompt, rankings
    skipped: set[int] = field(default_factory=set)  # assignment ids


def read_facts(queue_id: int) -> Facts:
    from django.db.models import Count

    from labeling.models import Assignment, Ranking, Task

    facts = Facts()
    for assignment_id, groups in Ranking.objects.filter(
        assignment__task__prompt__queue_id=queue_id
    ).values_list("assignment_id", "groups"):
        facts.rankings.setdefault(assignment_id, []).append(groups)
    facts.tasks = list(
        Task.objects.filter(prompt__queue_id=queue_id)
        .annotate(n=Count("assignments__ranking"))
        .values_list("pk", "overlap", "submitted_count", "n")
    )
    facts.labeled_twice = list(
        Ranking.objects.filter(assignment__task__prompt__queue_id=queue_id)
        .values_list("assignment__labeler_id", "assignment__task__prompt_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("assignment__labeler_id", "assignment__task__prompt_id", "n")
    )
    facts.skipped = set(
        Assignment.objects.filter(task__prompt__queue_id=queue_id, status=Assignment.Status.SKIPPED).values_list(
            "pk", flat=True
        )
    )
    return facts


def check(log: list[Call], facts: Facts) -> list[tuple[str, list[str]]]:
    """Each check's name and its failures (empty: passed), comparing the client's log with the database."""
    submits = [c for c in log if c.endpoint in SUBMITS]
    stored = defaultdict(list)
    for c in submits:
        if c.outcome == "stored":
            stored[c.assignment].append(c)
    # A submit with no readable answer may or may not be stored; such assignments are left out of the
    # "nothing stored behind the client's back" check (and make the transport check fail anyway).
    unknown = {c.assignment for c in submits if c.outcome == "error"}
    told = {c.assignment for c in submits if c.outcome in ("stored", "already")}
    results = [
        ("no 5xx answer", [f"{c.endpoint} {c.assignment}: HTTP {c.status}" for c in log if c.status >= 500]),
        ("no transport error or unreadable answer",
         [f"{c.endpoint} {c.assignment}: {c.message}" for c in log if c.status == 0 or c.outcome == "error"]),
        ("no valid label refused as invalid", [f"{c.endpoint} {c.assignment}" for c in log if c.outcome == "invalid"]),
        ("every submit answered 'stored' is stored exactly once, with the groups sent",
         [f"assignment {a}: {len(facts.rankings.get(a, []))} rows" for a in stored
          if len(facts.rankings.get(a, [])) != 1]
         + [f"assignment {a}: stored {facts.rankings[a][0]}, sent {calls[0].groups}" for a, calls in stored.items()
            if len(facts.rankings.get(a, [])) == 1 and facts.rankings[a][0] != calls[0].groups]),
        ("a submit sent twice is answered 'stored' at most once",
         [f"assignment {a}: {len(calls)} times" for a, calls in stored.items() if len(calls) > 1]),
        ("a submit answered 'already stored' has its one stored ranking",
         [f"assignment {c.assignment}" for c in submits if c.outcome == "already"
          and len(facts.rankings.get(c.assignment, [])) != 1]),
        ("a submit answered 'refused' stored nothing",
         [f"assignment {c.assignment}: {c.message}" for c in submits if c.outcome == "refused"
          and c.assignment not in told and c.assignment in facts.rankings]),
        ("no ranking stored that the client was not told about",
         [f"assignment {a}" for a in facts.rankings if a not in told and a not in unknown]),
        ("a skip answered 'skipped' is a skipped assignment",
         [f"assignment {c.assignment}" for c in log if c.outcome == "skipped" and c.assignment not in facts.skipped]),
        ("no task has more labels than its overlap; each task's counter equals its rankings",
         [f"task {pk}: overlap {overlap}, counter {count}, rankings {n}" for pk, overlap, count, n in facts.tasks
          if count > overlap or n != count]),
        ("no labeler labeled a prompt twice",
         [f"labeler {u}, prompt {p}: {n} rankings" for u, p, n in facts.labeled_twice]),
    ]  # fmt: skip
    return results


def print_checks(results: list[tuple[str, list[str]]]) -> bool:
    print("\nchecks against the database:")
    for name, failures in results:
        print(f"  {'FAIL' if failures else 'ok  '} {name}" + (f" ({len(failures)})" if failures else ""))
        for failure in failures[:10]:
            print(f"         {failure}")
    return not any(failures for _, failures in results)


# --- queries per request ---------------------------------------------------------------------------


def queries_per_request(queue_id: int) -> list[tuple[str, int, int, float]]:
    """One request of each endpoint through Django's test client, on the bench database, alone.

    Returns (endpoint, status, SQL queries, milliseconds) per request.
    """
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from core.roles import LABELER

    user = User.objects.create_user("query-probe", password=PASSWORD)
    user.groups.add(Group.objects.get(name=LABELER))
    client = Client(SERVER_NAME="127.0.0.1")
    rows = []

    def measure(endpoint: str, method: str, url: str, data=None):
        started = time.perf_counter()
        connection.queries_log.clear()  # a full log (9,000 queries: the bench's own setup) would count nothing
        with CaptureQueriesContext(connection) as queries:
            response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        rows.append((endpoint, response.status_code, len(queries), (time.perf_counter() - started) * 1000))
        return response

    measure("login page", "get", "/login/")
    measure("login", "post", "/login/", {"username": "query-probe", "password": PASSWORD})
    leased = measure("next (new lease)", "get", f"/queues/{queue_id}/next/")
    assignment = int(TASK_URL.search(leased["Location"]).group(1))
    measure("next (own lease)", "get", f"/queues/{queue_id}/next/")
    page = measure("task page", "get", f"/tasks/{assignment}/")
    answer_ids = list(dict.fromkeys(int(pk) for pk in ANSWER_ID.findall(page.content.decode())))
    form = {"groups": json.dumps(random_groups(answer_ids, random.Random(0))), "time_spent_ms": "5000",
            **{f"rating-{pk}": "4" for pk in answer_ids}}  # fmt: skip
    submitted = measure("submit (+ next lease)", "post", f"/tasks/{assignment}/submit/", form)
    measure("submit again", "post", f"/tasks/{assignment}/submit/", form)
    assignment = int(TASK_URL.search(submitted["Location"]).group(1))
    measure("skip (+ next lease)", "post", f"/tasks/{assignment}/skip/", {"reason": "unclear", "note": ""})
    measure("healthz", "get", "/healthz")
    return rows


# --- setting up and running the platform -----------------------------------------------------------


def sample_prompts(prompts: int, answers: int):
    """The bench's prompts: (prompt text, [(answer text, model), ...]) for each, the same on every run."""
    for i in range(prompts):
        yield (f"Prompt {i}: explain item {i} briefly.",
               [(f"Answer {j} to prompt {i}. " * 8, f"model-{j % 3}") for j in range(answers)])  # fmt: skip


def create_labelers(count: int) -> None:
    """Users labeler-00, labeler-01, ... in the labeler group, bulk-created."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from core.roles import LABELER

    password = make_password(PASSWORD)  # one hash for all: hashing is slow on purpose
    users = User.objects.bulk_create(User(username=f"labeler-{n:02d}", password=password) for n in range(count))
    Group.objects.get(name=LABELER).user_set.add(*users)


def create_queue(*, prompts: int, answers: int, overlap: int, lease_seconds: int, name: str = "load") -> int:
    """A ranking queue of `sample_prompts`, bulk-created; returns its id."""
    from labeling.assignment.services import sync_tasks
    from labeling.models import Answer, Prompt, Queue

    # lease_seconds below the form's minimum of 30 is allowed here (the smoke test uses it).
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.RANKING, ranking_overlap=overlap,
                                 lease_seconds=lease_seconds)  # fmt: skip
    texts = list(sample_prompts(prompts, answers))
    made = Prompt.objects.bulk_create(
        (Prompt(queue=queue, text=text, content_hash=f"{i:064x}") for i, (text, _) in enumerate(texts)),
        batch_size=2000,
    )  # fmt: skip
    Answer.objects.bulk_create(
        (Answer(prompt=prompt, position=j, text=text, model=model)
         for prompt, (_, replies) in zip(made, texts, strict=True) for j, (text, model) in enumerate(replies)),
        batch_size=5000,
    )  # fmt: skip
    sync_tasks(queue)
    return queue.pk


def signed_in_sessions(numbers: range) -> dict[int, tuple[str, str]]:
    """Labeler number -> session cookie, made as a login makes it (with the servers' SECRET_KEY and database)."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    users = User.objects.in_bulk([f"labeler-{n:02d}" for n in numbers], field_name="username")
    sessions = {}
    for n in numbers:
        client = Client()
        client.force_login(users[f"labeler-{n:02d}"])
        sessions[n] = (settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    return sessions


def create_data(*, labelers: int, prompts: int, answers: int, overlap: int, lease_seconds: int) -> int:
    """Labelers and a ranking queue; returns the queue id."""
    create_labelers(labelers)
    return create_queue(prompts=prompts, answers=answers, overlap=overlap, lease_seconds=lease_seconds)


def platform_env(*, database_url: str, redis_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of the servers as in production (DEBUG off), on the bench's database and Redis db: the broker
    and, as README's "Running it for real" says, the cache (sessions, signed-in users) in Redis."""
    return {
        **os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": redis_url, "CACHE_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_COOKIES": "0", "SECURE_SSL_REDIRECT": "0", "ANNOTATE_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
    }  # fmt: skip


def server_ran_clean(process: subprocess.Popen, log: Path) -> bool:
    """False, with the end of its log printed, when a server exited or logged a traceback during the run."""
    if process.poll() is None and b"Traceback" not in log.read_bytes():
        return True
    print(f"\nFAIL {log.name} logged an error:\n{log.read_text()[-5000:]}")
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(base_url: str, processes: list[subprocess.Popen], logs: list[Path], timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:
                raise SystemExit(f"{log.name} exited ({process.returncode}):\n{log.read_text()[-5000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200 and all(
                log.name != "worker.log" or b" ready." in log.read_bytes() for log in logs
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"The platform did not become healthy in {timeout:.0f} s:\n{logs[0].read_text()[-5000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--answers", type=int, default=9)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--lease-seconds", type=int, default=None,
                        help="default 30, or 3 x --think when labelers think")  # fmt: skip
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a labeler spends on a task page (uniform, +-50%%; default 0: none)")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which labelers log in; figures and CPU are taken after it (default: "
                             "0, or 60 with --think)")  # fmt: skip
    parser.add_argument("--form-logins", type=int, default=50,
                        help="labelers who log in through the form; the others arrive signed in (default 50)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers")
    parser.add_argument("--p-skip", type=float, default=0.05)
    parser.add_argument("--p-expire", type=float, default=0.03)
    parser.add_argument("--p-double", type=float, default=0.05)
    parser.add_argument("--database", default="bench_load")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="its db is emptied first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)
    if args.lease_seconds is None:
        args.lease_seconds = max(30, round(3 * args.think))
    if args.ramp is None:
        args.ramp = 60.0 if args.think else 0.0

    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    recreate(config, args.database)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = platform_env(database_url=url, redis_url=args.redis_url, var_dir=var_dir)
    # This process reads the same settings (but DEBUG, for the test client): it decodes the servers'
    # messages cookies with their SECRET_KEY and reads the database.
    os.environ.update({**env, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "annotate.settings"})
    import django
    import redis

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    processes: list[subprocess.Popen] = []
    ok = False
    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        queue_id = create_data(labelers=args.labelers, prompts=args.prompts, answers=args.answers,
                               overlap=args.overlap, lease_seconds=args.lease_seconds)  # fmt: skip
        with connection.cursor() as cursor:
            # Fresh statistics, as autovacuum would gather within a minute: the bulk insert left none.
            cursor.execute("ANALYZE")
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                       check=True)  # fmt: skip
        print(f"database {args.database!r}: {args.labelers} labelers, {args.prompts:,} prompts x {args.answers} "
              f"answers, overlap {args.overlap}, lease {args.lease_seconds} s; ready in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=3).flushdb()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        logs = [var_dir / "gunicorn.log", var_dir / "worker.log"]
        commands = [
            [str(BIN / "gunicorn"), "annotate.wsgi", "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}"],
            [str(BIN / "celery"), "-A", "annotate", "worker", "-Q", "celery,training,generation", "--concurrency",
             "1", "--loglevel", "INFO", "-n", f"bench-load-{port}@%h"],
        ]  # fmt: skip
        for command, log in zip(commands, logs, strict=True):
            with log.open("wb") as out:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        wait_healthy(base_url, processes, logs)
        print(f"gunicorn ({args.workers} workers) on {base_url} and a Celery worker on {args.redis_url}: healthy; "
              f"{args.labelers} labelers for {args.duration:.0f} s, think time "
              f"{f'{args.think:g} s +-50%' if args.think else 'none'}, "
              f"{min(args.form_logins, args.labelers)} logins through the form over {args.ramp:g} s, "
              f"{os.cpu_count()} cores")  # fmt: skip

        print("load average (1, 5, 15 min) before the run: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        plan = Plan(args.p_skip, args.p_expire, args.p_double, args.lease_seconds, args.think, args.ramp)
        meter = CpuMeter({"web (gunicorn)": processes[0].pid, "worker (celery)": processes[1].pid,
                          "PostgreSQL (whole server)": postmaster_pid()})  # fmt: skip
        sessions = signed_in_sessions(range(min(args.form_logins, args.labelers), args.labelers))
        log, elapsed = asyncio.run(run_labelers(labelers=args.labelers, duration=args.duration, base_url=base_url,
                                                queue_id=queue_id, plan=plan, seed=args.seed, on_window=meter,
                                                sessions=sessions))  # fmt: skip
        print_figures(log, elapsed)
        if args.ramp and "start" in meter.samples:
            window_start, window_end = meter.samples["start"][0], meter.samples["end"][0]
            print(f"\nafter the logins ({args.ramp:g} s), the steady state:", end="")
            print_figures([c for c in log if window_start <= c.at], window_end - window_start)
        window_start = meter.samples.get("start", (0.0,))[0]
        cycles = sum(1 for c in log if c.at >= window_start and c.endpoint in ("submit", "submit late", "skip"))
        meter.report(cycles)
        print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        ok = print_checks(check(log, read_facts(queue_id)))
        stored = sum(1 for c in log if c.outcome == "stored")
        if stored == 0:
            print("  FAIL no submit was stored: the run proves nothing")
            ok = False
        print(f"\nSQL queries per request (one request each, alone, Django test client on {args.database!r}):")
        for endpoint, status, count, ms in queries_per_request(queue_id):
            print(f"  {endpoint:<21} HTTP {status}  {count:>3} queries  {ms:>7.1f} ms")
        ok = server_ran_clean(processes[0], logs[0]) and ok
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(var_dir, ignore_errors=True)
        drop(config, args.database, keep=args.keep)
    print("\nall checks passed" if ok else "\nA CHECK FAILED: see FAIL above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
