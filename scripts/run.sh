#!/usr/bin/env bash
# Run celery-dalga on the embedded default: SQLite jobs, SQLite broker, API on 127.0.0.1:34006.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/dalga "$@" run
