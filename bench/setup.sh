#!/usr/bin/env bash
# The benchmarks' own venv (bench/.venv): the project plus the peers it is compared with,
# RedBeat and django-celery-beat, which are not project dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
if [ ! -f bench/.venv/.installed ] || [ pyproject.toml -nt bench/.venv/.installed ] || [ bench/setup.sh -nt bench/.venv/.installed ]; then
    bench/.venv/bin/pip install --quiet -e . "celery-redbeat>=2.2" "django-celery-beat>=2.6" "django>=4.2" "uvicorn[standard]>=0.30" "gevent>=24.2" "py-spy>=0.3" "aiohttp>=3.9" "httpx>=0.27" "requests>=2.31"
    touch bench/.venv/.installed
fi
