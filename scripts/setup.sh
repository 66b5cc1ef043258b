#!/usr/bin/env bash
# Install what celery-dalga needs into .venv: the Debian headers mysqlclient builds against,
# then the project (with its dev extras when called as `setup.sh dev`). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

apt_install() {  # Debian packages, as root or through sudo
    local sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@"
}

if ! pkg-config --exists mysqlclient 2>/dev/null; then
    echo "installing default-libmysqlclient-dev and pkg-config (mysqlclient builds against them)"
    apt_install default-libmysqlclient-dev pkg-config gcc
fi

if [ "$extras" = dev ] && ! command -v go >/dev/null; then
    echo "installing golang-go (tests build Dalga's and Kala's own Go clients, and Kala, with it)"
    apt_install golang-go
fi

if [ "$extras" = dev ] && ! command -v curl >/dev/null; then
    echo "installing curl (tests/test_kala_readme.py runs Kala's README examples with it)"
    apt_install curl
fi

if [ "$extras" = dev ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    echo "installing chromium and chromium-driver (tests/test_ui.py drives the UI in them)"
    apt_install chromium chromium-driver
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv

target="."
[ "$extras" = dev ] && target=".[dev]"
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing $target into .venv"
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e "$target"
    touch "$stamp"
fi
