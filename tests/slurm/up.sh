#!/usr/bin/env bash
# Bring up a throw-away single-node Slurm on this machine (Debian/Ubuntu, as root), for tests/slurm.
#
#   tests/slurm/up.sh [STATE_DIR]      (default /tmp/massmaps-slurm; tests/slurm/down.sh tears it down)
#
# Installs slurmctld, slurmd, slurm-client and munge with apt-get when they are missing, writes
# /etc/slurm/slurm.conf and gres.conf (the plugin's nested srun drops SLURM_CONF, so the config must sit
# at the default path; an existing config that this script did not write is left alone and the script
# fails), starts munged (unless one already answers), slurmctld and slurmd with pid files under
# STATE_DIR, and waits until the node is idle. One node: nproc CPUs, 90% of the memory, one fake GPU
# (a gres whose device file is a symlink to /dev/null), MinJobAge=1800 so that finished jobs stay visible
# to squeue (the workflow's status command) for 30 minutes. Every wait has a timeout; on failure the
# daemons' logs are printed.
set -euo pipefail

STATE=${1:-/tmp/massmaps-slurm}
MARKER="# written by massmaps tests/slurm/up.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
APT_TIMEOUT=${APT_TIMEOUT:-300}

log() { echo "[slurm up $(date +%T)] $*" >&2; }
die() {
    log "ERROR: $*"
    for f in "$STATE"/log/*.log; do
        [ -f "$f" ] && { echo "----- $f" >&2; tail -n 60 "$f" >&2; }
    done
    exit 1
}
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${limit} s waiting for $what"
        sleep 0.2
    done
}

[ "$(id -u)" -eq 0 ] || die "must run as root (starts slurmctld, slurmd and munged, writes $CONF)"

# ---------------------------------------------------------------------------------------- packages
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout "$APT_TIMEOUT" apt-get install -y -qq --no-install-recommends "${need[@]}" >"${TMPDIR:-/tmp}/massmaps-slurm-apt.log" 2>&1; then
        timeout "$APT_TIMEOUT" apt-get update -qq || die "apt-get update failed"
        timeout "$APT_TIMEOUT" apt-get install -y -qq --no-install-recommends "${need[@]}" \
            >"${TMPDIR:-/tmp}/massmaps-slurm-apt.log" 2>&1 \
            || { tail -n 30 "${TMPDIR:-/tmp}/massmaps-slurm-apt.log" >&2; die "apt-get install ${need[*]} failed"; }
    fi
fi

# ------------------------------------------------------------------------------------------- state
if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    die "a slurmctld from $STATE is still running (pid $(cat "$STATE/slurmctld.pid")); run tests/slurm/down.sh $STATE"
fi
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script: not touching a real Slurm configuration"
fi
rm -rf "$STATE"
mkdir -p "$STATE"/{log,ctld,spool,dev}
chmod 755 "$STATE"
ln -s /dev/null "$STATE/dev/gpu0"   # slurmd wants a device file for the GPU gres; nothing opens it

# ------------------------------------------------------------------------------------------- munge
if timeout 10 bash -c 'munge -n | unmunge' >/dev/null 2>&1; then
    log "munged already running: reusing it"
else
    [ -f /etc/munge/munge.key ] || runuser -u munge -- /usr/sbin/mungekey --create
    for d in /run/munge /var/log/munge /var/lib/munge /etc/munge; do
        mkdir -p "$d"
        chown munge:munge "$d"
    done
    chmod 700 /etc/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
    cp /run/munge/munged.pid "$STATE/munged.pid"  # ours: down.sh stops it
    wait_for 10 "munged" bash -c 'munge -n | unmunge'
fi

# ------------------------------------------------------------------------------------------ config
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p /etc/slurm
cat >"$CONF" <<EOF
$MARKER; state under $STATE; tests/slurm/down.sh removes it
ClusterName=massmaps-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# finished jobs stay visible to squeue for 30 minutes (the workflow polls squeue, there is no sacct)
MinJobAge=1800
KillWait=10
GresTypes=gpu
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$GRES" <<EOF
$MARKER
AutoDetect=off
NodeName=$HOST Name=gpu File=$STATE/dev/gpu0
EOF
log "slurm.conf: node $HOST, $CPUS CPUs, $MEM_MB MB, 1 fake GPU"

# ----------------------------------------------------------------------------------------- daemons
if timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    die "a Slurm controller already answers on this machine (another STATE_DIR?): not starting a second one"
fi
/usr/sbin/slurmctld -c || die "slurmctld failed to start"
wait_for 30 "slurmctld (scontrol ping)" bash -c 'scontrol ping | grep -q UP'
/usr/sbin/slurmd || die "slurmd failed to start"
wait_for 60 "node $HOST idle" bash -c "sinfo -h -N -n $HOST -o %t | grep -qx idle"
log "up: $(sinfo -h -N -o '%N %t %c CPUs %m MB %G')"
