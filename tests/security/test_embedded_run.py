"""The embedded run (`make run`'s settings): DEBUG off unless DEBUG=1, a secret key of the install's own in
var/secret_key, everything it writes readable by its owner only, plain HTTP on 127.0.0.1 with static files
and the site's own error pages.

The embedded run is started in subprocesses, with the environment of `make run` (no DATABASE_URL,
SECRET_KEY, DEBUG...) and umask 022, a common login default, so that what is checked comes from the app.
"""
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import Http404
from django.views import defaults

# Settings the test run or a developer's shell may have, which `make run` does not set.
NOT_EMBEDDED = {
    "DEBUG", "SECRET_KEY", "DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "MEDIA_ROOT",
    "ARTIFACTS_DIR", "ALLOWED_HOSTS", "HTTPS", "SECURE_COOKIES", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER", "CLIENT_IP_HEADER", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip


def embedded(var_dir: Path, **env: str) -> dict:
    clean = {key: value for key, value in os.environ.items() if key not in NOT_EMBEDDED}
    return {**clean, "ANNOTATE_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "annotate.settings", **env}


def run(var_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=embedded(var_dir, **env), umask=0o022,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """A fresh install's var/ after `manage.py migrate`, as `make run` starts."""
    var_dir = tmp_path_factory.mktemp("install") / "var"
    run(var_dir, "manage.py", "migrate", "--noinput", "-v0")
    return var_dir


def test_debug_is_off_unless_asked_for_with_debug_1(tmp_path):
    code = "from annotate import settings; print(settings.DEBUG)"
    assert run(tmp_path, "-c", code).stdout.split() == ["False"]
    assert run(tmp_path, "-c", code, DEBUG="1").stdout.split() == ["True"]


# Each process waits for the same moment, then reads the settings: web and worker starting at once.
RACE = "import sys, time, annotate; time.sleep(max(0, float(sys.argv[1]) - time.time())); " \
       "import annotate.settings as s; print(s.SECRET_KEY)"  # fmt: skip


def test_without_secret_key_an_install_makes_its_own_once_and_every_process_reads_it(tmp_path):
    var_dir = tmp_path / "var"
    start = str(time.time() + 3)
    processes = [
        subprocess.Popen([sys.executable, "-c", RACE, start], cwd=settings.BASE_DIR, env=embedded(var_dir),
                         umask=0o022, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    keys = {stdout.strip() for stdout, _ in outputs}
    key_file = var_dir / "secret_key"
    assert keys == {key_file.read_text().strip()} and len(keys.pop()) >= 50
    assert mode(key_file) == 0o600 and mode(var_dir) == 0o700
    assert [path.name for path in var_dir.iterdir() if path.name.startswith(".secret_key")] == []  # no drafts left

    code = "from annotate import settings; print(settings.SECRET_KEY)"
    assert run(var_dir, "-c", code).stdout.strip() == key_file.read_text().strip()  # kept, not made again
    assert run(tmp_path / "other", "-c", code).stdout.strip() != key_file.read_text().strip()  # another install
    assert run(var_dir, "-c", code, SECRET_KEY="from-the-environment").stdout.strip() == "from-the-environment"


# An admin uploads an import file on its page (the message to the worker is a file of the embedded broker),
# an export is built as the worker builds one, and a failed login is counted in the cache.
WRITE_EVERYTHING = """
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from labeling.datasets import exports
from labeling.models import ImportJob, Queue

admin = User.objects.create_user("boss", password="pw-boss-123")
admin.groups.add(Group.objects.get_or_create(name="admin")[0])
queue = Queue.objects.create(name="Q")
client = Client(HTTP_HOST="127.0.0.1")
assert client.post("/login/", {"username": "boss", "password": "wrong"}).status_code == 200
client.force_login(admin)
upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "hello"}\\n')
assert client.post(f"/manage/queues/{queue.pk}/import/", {"file": upload}).status_code == 302
snapshot = exports.build_export(exports.record_export(name="e", dataset="sft", fmt="jsonl", queues=[queue], filters={}))
print(ImportJob.objects.get().file.path)
print(exports.artifact(snapshot.file))
"""


def test_what_the_embedded_run_writes_is_readable_by_its_owner_only(install):
    upload, export = map(Path, run(install, "manage.py", "shell", "-v0", "-c", WRITE_EVERYTHING).stdout.split())
    assert upload.is_relative_to(install / "media") and export.is_relative_to(install / "artifacts")
    for path in (install, install / "annotate.sqlite3", install / "secret_key", upload, export):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert any((install / "cache").iterdir()) and any((install / "celery" / "queue").iterdir())
    lax = [f"{path} {oct(mode(path))}" for path in [install, *install.rglob("*")] if mode(path) & 0o077]
    assert lax == []


# What a browser on the same machine does with `make run`: plain HTTP to 127.0.0.1.
BROWSE = """
import json
from django.contrib.auth.models import User
from django.test import Client

User.objects.create_user("lab", password="pw-lab-123")
client = Client(HTTP_HOST="127.0.0.1")
login_page, css, missing = client.get("/login/"), client.get("/static/css/app.css"), client.get("/no/such/page/")
logged_in = client.post("/login/", {"username": "lab", "password": "pw-lab-123"})
print(json.dumps({
    "login": [login_page.status_code, login_page.content.decode()],
    "css": [css.status_code, css["Content-Type"]],
    "missing": [missing.status_code, missing.content.decode()],
    "logged_in": [logged_in.status_code, logged_in.get("Location"), logged_in.cookies["sessionid"]["secure"]],
}))
"""


def test_the_embedded_run_serves_plain_http_with_static_files_and_the_sites_own_404_page(install):
    seen = json.loads(run(install, "manage.py", "shell", "-v0", "-c", BROWSE).stdout.splitlines()[-1])
    status, page = seen["login"]
    assert status == 200 and "/static/css/app.css" in page  # not redirected to https://, and unhashed
    assert seen["css"] == [200, "text/css; charset=\"utf-8\""]
    status, page = seen["missing"]
    assert status == 404 and "There is nothing here" in page and "/static/css/app.css" in page
    assert "URLconf" not in page and "Traceback" not in page  # not Django's debug page
    assert seen["logged_in"] == [302, "/", ""]  # a session cookie that plain HTTP sends back


@pytest.mark.parametrize(
    "view, exception, status, heading",
    [
        (defaults.bad_request, BadRequest(), 400, "Request not accepted"),
        (defaults.permission_denied, PermissionDenied(), 403, "Not allowed"),
        (defaults.page_not_found, Http404(), 404, "Not found"),
        (defaults.server_error, None, 500, "Something went wrong"),
    ],
)
def test_error_pages_look_like_the_site(rf, view, exception, status, heading):
    request = rf.get("/somewhere/")
    request.user = AnonymousUser()
    response = view(request) if exception is None else view(request, exception)
    page = response.content.decode()
    assert response.status_code == status and f"<h1>{heading}</h1>" in page
    assert 'class="topbar"' in page and "/static/css/app.css" in page
