#!/usr/bin/env bash
# Run the whole suite against real MariaDB, PostgreSQL, Redis, Celery and HTTP on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
scripts/services.sh || echo "a service is down: its tests skip (and fail under CI=true)" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
