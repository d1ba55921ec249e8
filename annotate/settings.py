"""Settings, read only from environment variables.

The defaults give the embedded run: SQLite in var/, a filesystem Celery broker in var/celery/, a secret
key made once in var/secret_key, plain HTTP on 127.0.0.1. DEBUG is off unless DEBUG=1. Production sets
DATABASE_URL (PostgreSQL), CELERY_BROKER_URL (Redis), CACHE_URL (Redis), SECRET_KEY and ALLOWED_HOSTS;
naming a host other than this machine turns HTTPS on. docs/security.md lists the HTTPS settings.
"""
import os
import re
import secrets
from pathlib import Path

import csp.constants as csp
import dj_database_url

# Whatever the app writes (the SQLite database, uploads, exports, reward models, the cache, the secret key)
# is readable by its owner only: files 0600, directories 0700. Set here, at the first import of every
# entry point (manage.py, gunicorn, celery), before anything is created.
os.umask(0o077)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ANNOTATE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
if VAR_DIR.stat().st_uid == os.geteuid():
    VAR_DIR.chmod(0o700)  # installs older than the umask made it 0755: this closes everything already in it


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def install_secret_key(path: Path) -> str:
    """This install's own secret key, kept in `path` (0600) and made there by the first process to start."""
    if not path.exists():
        # Written aside, then linked into place: link() fails when the name exists, so when web and worker
        # start at once one key wins, both read that one, and no one reads a half-written file.
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new secret key made, or set SECRET_KEY")
    return key


DEBUG = env_bool("DEBUG", False)  # DEBUG=1 for development only: it shows stack traces and settings
SECRET_KEY = os.environ.get("SECRET_KEY") or install_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
# HTTPS: plain HTTP is redirected, cookies are sent over HTTPS only, HSTS, hashed static files (collectstatic).
# On by default once ALLOWED_HOSTS names a host other than this machine, i.e. the site is served to others;
# off for the embedded run and the tests on 127.0.0.1/localhost, which browsers reach over plain HTTP.
HTTPS = env_bool("HTTPS", not set(ALLOWED_HOSTS) <= {"127.0.0.1", "localhost", "::1", "[::1]"})
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: no CDN at run time
    "csp",  # django-csp: the Content-Security-Policy header (its checks catch old-style settings)
    "core",
    "labeling",
    "rewardtrain",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.audit.AuditMiddleware",  # the client's address for the audit log
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",  # CONTENT_SECURITY_POLICY below; a fresh nonce per request
    "annotate.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "annotate.urls"
WSGI_APPLICATION = "annotate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.roles.roles_context",
                "csp.context_processors.nonce",  # {{ CSP_NONCE }}, for the rare inline script
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'annotate.sqlite3'}"),
        # Each process keeps its connection (checked before reuse): a new PostgreSQL connection costs a backend
        # process and cold catalog caches, which cost more CPU than the request itself (docs/load.md).
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "600")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock when a transaction starts, so two processes
    # (web and worker) never both read-then-write the same rows; the timeout waits for it.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
else:
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("TEST_DATABASE_NAME")
    # Behind PgBouncer in transaction mode (docs/scaling.md) consecutive transactions may run on different server
    # connections: a server-side cursor left open by .iterator() outside a transaction would be lost. Prepared
    # statements are not a concern: Django binds parameters client-side, which prepares nothing.
    if os.environ.get("DATABASE_POOLER", "").lower() == "transaction":
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed files where the site is served for real (after collectstatic); plain files otherwise.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if HTTPS
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (the embedded run, tests) WhiteNoise serves static/ and the apps' files where they are:
# runserver serves none once DEBUG is off.
WHITENOISE_USE_FINDERS = not HTTPS
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Django chmods every stored upload to 0644 unless told otherwise, whatever the umask.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Pair datasets (Parquet) and trained reward models; shared by web and workers in production.
ARTIFACTS_DIR = Path(os.environ.get("ARTIFACTS_DIR", VAR_DIR / "artifacts"))
# Base models and generators that runs and generation jobs may name, one directory each (written by
# save_pretrained, or `hf download ORG/MODEL --local-dir MODELS_DIR/ORG/MODEL`); besides the bundled
# ones, nothing else is loaded (rewardtrain.ml.model_sources), and nothing is ever downloaded.
MODELS_DIR = Path(os.environ.get("MODELS_DIR", VAR_DIR / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # also for libraries that load files by themselves
# Days an export snapshot's file and card are kept once written; then beat's prune-exports task (or
# `manage.py prune_exports`) deletes them and the record says so. 0 keeps them forever. Pair datasets are not
# pruned: training runs and reward models name them (docs/exports.md).
# The stored agreement intervals (labeling.quality.aggregates) are drawn again at most this often per queue: a draw
# reads every prompt's counts (seconds at a million prompts), while the pooled figures follow each ranking.
# Rankings stored within this many seconds of each other are counted into the stored figures by one task.
AGREEMENT_BACKLOG_SECONDS = float(os.environ.get("AGREEMENT_BACKLOG_SECONDS", "1"))
AGREEMENT_INTERVALS_SECONDS = int(os.environ.get("AGREEMENT_INTERVALS_SECONDS", "60"))
if AGREEMENT_INTERVALS_SECONDS < 0:
    raise RuntimeError("AGREEMENT_INTERVALS_SECONDS must be 0 or more")
EXPORT_RETENTION_DAYS = int(os.environ.get("EXPORT_RETENTION_DAYS", "30"))
if EXPORT_RETENTION_DAYS < 0:
    raise RuntimeError("EXPORT_RETENTION_DAYS must be 0 (keep forever) or more")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
# Plain HTTP is redirected when HTTPS is on (docs/security.md). Behind a TLS proxy set SECURE_PROXY_SSL_HEADER=1: the
# Content-Security-Policy on every response (django-csp): scripts and styles come only from this site, so text
# that slipped past the escaping could still run nothing. An inline script (only Swagger UI's start-up on
# /api/docs/) must carry the request's fresh nonce, {{ CSP_NONCE }}. Chart.js and SortableJS style elements
# through the CSSOM, which style-src does not govern; markup has no style attributes. img-src is spelled out so
# that /api/docs/ can add data: images to it, Swagger UI's icons (annotate/api_urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "frame-ancestors": [csp.NONE],
        "form-action": [csp.SELF],
    }
}
# HTTPS only when DEBUG is off (docs/security.md). Behind a TLS proxy set SECURE_PROXY_SSL_HEADER=1: the
# proxy must then set X-Forwarded-Proto itself, or every request looks like plain HTTP and is redirected.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if HTTPS else "0"))
# Both bind every subdomain of the site's domain (preload: for years, in browsers' built-in lists), so
# they are the domain owner's call: off unless set, and check --deploy is not asked to nag about them.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# The cache holds the login failure counts (core.login_limits), so every web process must share it:
# CACHE_URL=redis://… in production (several machines); files in var/cache otherwise, which the
# processes of one machine share (gunicorn workers, runserver).
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL:
    raise RuntimeError(f"CACHE_URL must be a redis:// URL, not {CACHE_URL!r}")
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": VAR_DIR / "cache"}
    }
# The signed-in user and their roles are read from the cache too (core/roles.py).
AUTHENTICATION_BACKENDS = ["core.roles.CachedUserBackend"]
# Sessions are read from the cache (written through to the database): no query per request for them.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Failed logins within LOGIN_FAILURE_WINDOW seconds, then the login page answers 429: LOGIN_FAILURE_LIMIT
# per username from one client address (a stranger elsewhere cannot lock the owner out), LOGIN_FAILURE_IP_LIMIT
# per address (higher: an office shares one), LOGIN_FAILURE_USER_LIMIT per username from all addresses
# together (much higher: it only stops guessing spread over many addresses).
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_IP_LIMIT = int(os.environ.get("LOGIN_FAILURE_IP_LIMIT", "20"))
LOGIN_FAILURE_USER_LIMIT = int(os.environ.get("LOGIN_FAILURE_USER_LIMIT", "100"))
LOGIN_FAILURE_WINDOW = int(os.environ.get("LOGIN_FAILURE_WINDOW", "900"))
# Where the client's address is: REMOTE_ADDR, or a header the TLS proxy sets and clients cannot
# (e.g. HTTP_X_REAL_IP). Behind a proxy REMOTE_ADDR is the proxy, and everyone would share one count.
CLIENT_IP_HEADER = os.environ.get("CLIENT_IP_HEADER", "REMOTE_ADDR")

# Limits on untrusted input: one prompt, answer or demonstration, and one import file.
MAX_TEXT_CHARS = int(os.environ.get("MAX_TEXT_CHARS", "20000"))
MAX_IMPORT_BYTES = int(os.environ.get("MAX_IMPORT_BYTES", str(50 * 1024 * 1024)))
MAX_IMPORT_ROWS = int(os.environ.get("MAX_IMPORT_ROWS", "100000"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * MAX_TEXT_CHARS + 1024 * 1024
# The push of prompts (POST /api/v1/queues/<id>/prompts/) may be larger than other API bodies, which
# keep the limit above (core.api.JSONParser answers 413 past either).
MAX_API_PUSH_BYTES = int(os.environ.get("MAX_API_PUSH_BYTES", str(20 * 1024 * 1024)))
# Scoring with a reward model runs in the web process (docs/api.md has the measured times): one request
# may cost at most SCORE_MAX_TOKENS tokens (answers x longest prompt + answer), and at most
# SCORE_CONCURRENCY requests per machine score at once (core.slots); more get 503 at once, so
# scoring never holds every web worker.
SCORE_MAX_TOKENS = int(os.environ.get("SCORE_MAX_TOKENS", "8192"))
SCORE_CONCURRENCY = int(os.environ.get("SCORE_CONCURRENCY", "1"))
SLOTS_DIR = Path(os.environ.get("SLOTS_DIR", VAR_DIR / "slots"))

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files in var/celery, shared by web and worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "celery" / "queue"),
        "data_folder_out": str(VAR_DIR / "celery" / "queue"),
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }
    for folder in CELERY_BROKER_TRANSPORT_OPTIONS.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
else:
    # Redis hands a message whose worker died (kill -9) to another worker after this many seconds.
    # A task still running by then gets a duplicate; the training task sees the live run's
    # heartbeat and drops it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "600"))}
# A training run whose worker has not beaten for this many seconds is sent to a worker again.
RUN_HEARTBEAT_TIMEOUT = int(os.environ.get("RUN_HEARTBEAT_TIMEOUT", "120"))
# SFT and policy runs checkpoint every this many optimizer steps: a run whose worker died resumes from there.
POLICY_CHECKPOINT_STEPS = int(os.environ.get("POLICY_CHECKPOINT_STEPS", "50"))
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-runs": {"task": "rewardtrain.tasks.requeue_stale_runs_task", "schedule": 60.0},
    # Registered names: the generation tasks live in rewardtrain.tasks and kept the names they had in labeling.
    "requeue-stale-generation-jobs": {"task": "labeling.tasks.requeue_stale_generation_jobs_task", "schedule": 60.0},
    "prune-exports": {"task": "labeling.tasks.prune_exports_task", "schedule": 3600.0},  # EXPORT_RETENTION_DAYS
    "count-agreement-backlogs": {"task": "labeling.tasks.count_all_backlogs_task", "schedule": 60.0},
}
# Heavy work (training, scoring) goes to its own queue, so a site can run it on GPU machines.
CELERY_TASK_ROUTES = {
    "rewardtrain.tasks.train_reward_model_task": {"queue": "training"},
    "rewardtrain.tasks.train_sft_task": {"queue": "training"},
    "rewardtrain.tasks.optimise_policy_task": {"queue": "training"},
    "rewardtrain.tasks.score_answers_task": {"queue": "training"},
    "labeling.tasks.generate_answers_task": {"queue": "generation"},  # rewardtrain.tasks, under its old name
    "rewardtrain.tasks.run_evaluation_round_task": {"queue": "generation"},
}
# Results are stored only where a caller waits for one (bench/score_latency.py); off by default.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Per-user limits on the expensive actions (core/throttles.py; docs/api.md), shared by the API and the
# pages and counted in the cache above, so every web process sees one count. THROTTLE_<SCOPE>=N/second|minute|
# hour|day, or "off" for no limit.
_THROTTLE_DEFAULTS = {
    "exports": "30/hour", "datasets": "30/hour", "runs": "20/hour", "generation": "10/hour", "push": "120/hour",
    "score": "120/minute",
}  # fmt: skip
THROTTLE_RATES = {}
for _scope, _default in _THROTTLE_DEFAULTS.items():
    _rate = os.environ.get(f"THROTTLE_{_scope.upper()}", _default).strip().lower()
    if _rate == "off":
        _rate = None
    elif not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", _rate):
        raise RuntimeError(f"THROTTLE_{_scope.upper()} must look like 30/hour (or be off), not {_rate!r}")
    THROTTLE_RATES[_scope] = _rate

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated request then gets 401 with a WWW-Authenticate header.
        "core.tokens.TokenAuthentication",
        "core.api.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, with a size limit (core.api.JSONParser).
    "DEFAULT_PARSER_CLASSES": ["core.api.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "core.api.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": THROTTLE_RATES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Annotate API",
    "DESCRIPTION": "Prompts, answers, demonstrations, rankings, exports, pair datasets, training runs and reward"
    " models. Authenticate with `Authorization: Token <key>` (ML staff make keys on /ml/tokens/) or a browser"
    " session. docs/api.md has examples.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are for signed-in users (browser session or API token).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
