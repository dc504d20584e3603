#!/usr/bin/env bash
# Tear down what tests/slurm/up.sh started: cancel the jobs, stop slurmd, slurmctld and (when up.sh
# started it) munged by the pids in their pid files, remove the generated /etc/slurm configs.
#
#   tests/slurm/down.sh [STATE_DIR] [--purge]     (--purge also deletes STATE_DIR and its logs)
set -uo pipefail

STATE=${1:-/tmp/massmaps-slurm}
PURGE=${2:-}
MARKER="# written by massmaps tests/slurm/up.sh"

log() { echo "[slurm down $(date +%T)] $*" >&2; }

# stop PIDFILE NAME: TERM, wait up to 15 s, then KILL
stop() {
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 75); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    jobs=$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs
        for _ in $(seq 50); do
            [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi
stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munged.pid" munged
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [ -f "$f" ] && grep -qF "$MARKER" "$f"; then
        rm -f "$f"
    fi
done
if [ "$PURGE" = "--purge" ]; then
    rm -rf "$STATE"
fi
log "down"
