#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, to try `launch.launcher=slurm` on a laptop and to test it:
# installs Debian's slurm-wlm and munge (as root, with apt) if missing, writes a one-node slurm.conf
# (this machine's real CPU count and memory, one partition `debug`), and starts munged, slurmctld and
# slurmd. Idempotent: a cluster that already answers `sinfo` is left running.
#
#   sudo bash tools/slurm_local.sh          # install + start, then wait until the node is idle
#   sudo bash tools/slurm_local.sh stop     # stop the three daemons
#
# Job accounting (slurmdbd, sacct) is not configured: vitlab reads job states from squeue, scontrol and
# the jobs' own result files. Exit status 3: cannot run here (not root, or no apt-get to install with).
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local

stop() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    for _ in $(seq 1 20); do  # a dying munged removes its socket: let it go before starting a new one
        pidof munged slurmctld slurmd >/dev/null || break
        sleep 0.5
    done
}

if [ "${1:-}" = "stop" ]; then
    stop
    exit 0
fi

# running with every CPU of this machine (a node started under OMP_NUM_THREADS=1 by an older version of
# this script had one CPU, and a 2-task job waited for ever): keep it; otherwise (re)configure
if sinfo -h -o %T >/dev/null 2>&1 && [ -n "$(sinfo -h -o %T 2>/dev/null | grep -E 'idle|mix|alloc')" ] \
        && [ "$(sinfo -h -o %c 2>/dev/null | head -1)" = "$(nproc --all)" ]; then
    echo "slurm_local: already running ($(sinfo -h -o '%P %D %T %C'))"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "slurm_local: needs root (to install slurm-wlm / munge and start their daemons)" >&2
    exit 3
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        echo "slurm_local: slurm-wlm and munge are not installed and there is no apt-get to install them" >&2
        exit 3
    fi
    echo "slurm_local: installing slurm-wlm and munge (about a minute)"
    apt-get update -qq || { sleep 10; apt-get update -qq; }  # one retry of a passing network fault
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

stop
mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS" /run/munge /var/log/munge /var/lib/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c "munged --force" || munged --force
else
    munged --force
fi

HOST=$(hostname -s)
CPUS=$(nproc --all)  # not nproc: it honours OMP_NUM_THREADS
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$CONF_DIR/slurm.conf" <<EOF
# written by vitlab's tools/slurm_local.sh: one node on localhost
ClusterName=vitlab-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
# allocate logical CPUs: a 2-vCPU machine may be 1 core x 2 threads
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# a requeued job may start again at once (the default waits for its credential to expire, 120 s)
AuthInfo=cred_expire=5
# seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or runs out of time
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -f "$CONF_DIR/slurm.conf"
slurmd -f "$CONF_DIR/slurm.conf"
for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
        echo "slurm_local: running ($(sinfo -h -o '%P %D %T %C'))"
        exit 0
    fi
    sleep 1
done
echo "slurm_local: the node did not become idle in 60 s; see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
sinfo >&2 || true
exit 1
