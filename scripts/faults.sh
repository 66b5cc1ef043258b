#!/usr/bin/env bash
# Run the whole fault suite (tests/faults, all eleven scenarios) on real processes; about 13 minutes.
# Each scenario prints its figures and appends them to tests/faults/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
scripts/services.sh
export DALGA_FAULTS_RECORD=1  # the figures go into tests/faults/results.jsonl
exec .venv/bin/python -m pytest -p no:cacheprovider -m "" -s tests/faults "$@"
