# Shared paths and helpers for the lab cluster scripts. Sourced, never run.
# Everything the lab creates lives under LAB_DIR (state, logs, keys, pid files) plus
# /etc/slurm/{slurm,slurmdbd}.conf, which Slurm's client commands read from their
# default location (an SSH session has no SLURM_CONF).
set -euo pipefail

LAB_DIR=${DAGSTER_SLURM_LAB_DIR:-/var/lib/dagster-slurm-lab}
LAB_USER=${DAGSTER_SLURM_LAB_USER:-dslab}
LAB_SSH_PORT=${DAGSTER_SLURM_LAB_SSH_PORT:-2222}
LAB_SSH_MFA_PORT=${DAGSTER_SLURM_LAB_SSH_MFA_PORT:-2223}
LAB_VENV=${DAGSTER_SLURM_LAB_VENV:-/opt/dagster-slurm-lab/venv}
# Stands for the cluster's shared filesystem: code locations and IO manager files the
# cluster user can read (and, under io/ and markers/, write).
LAB_SHARED=${DAGSTER_SLURM_LAB_SHARED_DIR:-/opt/dagster-slurm-lab/shared}
LAB_CLUSTER=lab
LAB_MARKER="# managed by dagster-slurm-launcher deploy/lab"
LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR=$LAB_DIR/run
LOG_DIR=$LAB_DIR/log

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons): sudo $0"
}

# pid_alive NAME: the daemon whose pid file the lab owns is running. A pid file left by a
# killed daemon may name a recycled pid, so the process's name must match too.
pid_alive() {
    local f=$RUN_DIR/$1.pid pid comm
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    case "$1:$comm" in
        mariadb:mariadbd|mariadb:mysqld|postgres:postgres|munged:munged|slurmdbd:slurmdbd|slurmctld:slurmctld|slurmd:slurmd|sshd:sshd|sshd-mfa:sshd|login-view:bindfs|demo-daemon:dagster-daemon|demo-webserver:dagster-webserv|demo-code-server:dagster) return 0 ;;
        *) return 1 ;;
    esac
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local what=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up within ${secs}s; see $LOG_DIR"
        sleep 0.5
    done
}

stop_daemon() {
    local name=$1 f=$RUN_DIR/$1.pid pid
    if pid_alive "$name"; then
        pid=$(cat "$f")
        if [ "$name" = sshd ]; then
            # Established sessions are children of the listener; a restart that kept them
            # would not test reconnection.
            pkill -TERM -P "$pid" 2>/dev/null || true
        fi
        # PostgreSQL takes SIGTERM as "wait for every client to leave"; SIGINT is its fast shutdown.
        if [ "$name" = postgres ]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
    # The login node's caching view of the shared filesystem lives as long as its sshd.
    [ "$name" != sshd ] || stop_daemon login-view
}
