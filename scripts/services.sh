#!/usr/bin/env bash
# Start MariaDB, Redis and PostgreSQL on 127.0.0.1 if they are not running, and wait for them.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {  # name port command...
    local name=$1 port=$2
    shift 2
    if up "$port"; then return 0; fi
    echo "starting $name"
    "$@" >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
        up "$port" && return 0
        sleep 0.5
    done
    echo "$name did not come up on 127.0.0.1:$port" >&2
    return 1
}

status=0
start MariaDB 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || status=1
start Redis 6379 redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || status=1
start PostgreSQL 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start || status=1
exit $status
