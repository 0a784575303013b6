# A PostgreSQL of our own on loopback: own data directory, own port, own user. Source it after
# common.sh. Used by ci/devenv; services' integration tests reach it through DATABASE_URL.
# shellcheck shell=bash

PG_PORT="${PAYPLANE_PG_PORT:-55432}"
PG_USER=payplane
PG_PASSWORD=payplane      # loopback-only development database: the password is not a secret
PG_DB=payplane
PG_DIR="${PAYPLANE_PG_DIR:-$PAYPLANE_STATE/devenv/postgres}"
# Addresses to listen on (comma-separated) and a network allowed to connect besides loopback: the
# local cloud runs a second instance on its node address for the pods (ci/deploy).
PG_LISTEN="${PAYPLANE_PG_LISTEN:-127.0.0.1}"
PG_ALLOW_CIDR="${PAYPLANE_PG_ALLOW_CIDR:-}"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
# shellcheck disable=SC2034  # used by ci/devenv
PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"

# pg_bindir: prints the directory of the newest installed PostgreSQL server binaries, installing
# Debian's `postgresql` package first if there are none (the machine image may already have them).
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] || [ ! -x "$d/postgres" ]; then
    # Debian's package also creates a default cluster on 5432; it stays stopped where
    # policy-rc.d forbids starting services, and we never use it either way.
    apt_install postgresql postgresql-client
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  [ -n "$d" ] && [ -x "$d/postgres" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
  echo "$d"
}

# PostgreSQL refuses to run as root, so as root we run it as a system user of our own.
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

pg_ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$PG_USER" >/dev/null 2>&1 && return 0
  log "creating system user $PG_USER to run PostgreSQL"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" \
    || die "could not create system user $PG_USER"
}

pg_pid() {
  local pid
  [ -f "$PG_DATA/postmaster.pid" ] || return 1
  pid=$(head -n 1 "$PG_DATA/postmaster.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# pg_ready BINDIR [DB]: the server answers a query on loopback with our credentials.
pg_ready() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 "$1/psql" -qAtX -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_USER" -d "${2:-$PG_DB}" -c 'select 1' >/dev/null 2>&1
}

pg_up() {
  local bin; bin=$(pg_bindir)
  if pg_pid >/dev/null && pg_ready "$bin"; then log "postgres already running on 127.0.0.1:$PG_PORT"; return 0; fi
  pg_ensure_user
  mkdir -p "$PG_DIR/run"
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER:" "$PG_DIR" "$PG_DIR/run"; fi

  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initialising PostgreSQL data directory $PG_DATA"
    local pwfile="$PG_DIR/.pwfile"
    # initdb reads the superuser's password from a file; it must be readable by the server user.
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER:" "$pwfile"; fi
    pg_as "$bin/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" -E UTF8 --no-locale \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; tail -n 20 "$PG_DIR/initdb.log" >&2; die "postgres: initdb failed (log: $PG_DIR/initdb.log)"; }
    rm -f "$pwfile"
    # Settings that matter, kept in a file of our own that postgresql.conf includes last.
    pg_as tee "$PG_DATA/payplane.conf" >/dev/null <<EOF
# Written by ci/devenv. Loopback only; durable like production (tests check crash safety).
listen_addresses = '$PG_LISTEN'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
EOF
    printf "\ninclude = 'payplane.conf'\n" | pg_as tee -a "$PG_DATA/postgresql.conf" >/dev/null
    if [ -n "$PG_ALLOW_CIDR" ]; then
      printf 'host all all %s scram-sha-256\n' "$PG_ALLOW_CIDR" | pg_as tee -a "$PG_DATA/pg_hba.conf" >/dev/null
    fi
  fi
  local have want; have=$(cat "$PG_DATA/PG_VERSION"); want=$("$bin/postgres" --version | sed 's/.* \([0-9]*\)\..*/\1/')
  [ "$have" = "$want" ] || die "postgres: $PG_DATA was made by PostgreSQL $have but $bin is $want; remove it or run 'ci/devenv down --purge'"

  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  ss -Hltn "sport = :$PG_PORT" | grep -q . && die "postgres: port $PG_PORT is already taken by another process (see: ss -ltnp 'sport = :$PG_PORT')"
  # pg_ctl -w waits until the server accepts connections; setsid detaches it from our session.
  pg_as setsid "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
    || { tail -n 20 "$PG_LOG" >&2 2>/dev/null; die "postgres did not start (log: $PG_LOG)"; }
  wait_for "postgres" "$PG_LOG" 30 pg_ready "$bin" postgres

  if [ "$(PGPASSWORD=$PG_PASSWORD "$bin/psql" -qAtX -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -c "select count(*) from pg_database where datname = '$PG_DB'")" = 0 ]; then
    PGPASSWORD=$PG_PASSWORD "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB" \
      || die "postgres: could not create database $PG_DB (log: $PG_LOG)"
  fi
}

pg_down() {
  local pid; pid=$(pg_pid) || return 0
  log "stopping PostgreSQL (pid $pid)"
  # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
  kill -INT "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "postgres (pid $pid) did not stop within 60 s (log: $PG_LOG)"
    sleep 0.2
  done
}

pg_status() {
  local pid
  if pid=$(pg_pid); then echo "postgres: running, pid $pid, 127.0.0.1:$PG_PORT, data $PG_DATA, log $PG_LOG"
  else echo "postgres: stopped"; return 1; fi
}
