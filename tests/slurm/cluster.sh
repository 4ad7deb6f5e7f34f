#!/usr/bin/env bash
# A SLURM cluster of N nodes on this one host, for the tests, as root without systemd (Debian's slurm
# 22.05 + munge): one slurmd per node (`slurmd -N n1`, a Port= each), every node at NodeAddr=127.0.0.1.
# The node names (n1, n2, ...) resolve as no host: as on many sites, jobs must ask SLURM for NodeAddr.
#   tests/slurm/cluster.sh up DIR [N]   install the packages when missing, start munged, slurmctld and N
#                                       slurmd (default 2) with state in DIR; prints DIR/slurm.conf
#                                       (export SLURM_CONF=it)
#   tests/slurm/cluster.sh down DIR     stop them (the packages stay)
# Exit 3 when the packages cannot be installed (not root, no apt-get): the tests skip, naming why.
set -euo pipefail
cmd=${1:?up|down}
dir=${2:?state dir}
nodes=${3:-2}

if [[ $cmd == down ]]; then
    # jobs first (their steps would outlive the daemons), then the daemons
    SLURM_CONF=$dir/slurm.conf scancel --full --user="$(id -un)" 2>/dev/null || true
    sleep 1
    pkill -9 -f "$dir/spool/" 2>/dev/null || true
    for pidfile in "$dir"/slurmd.*.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
        [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1; pkill -9 -f "slurmd -f $dir/slurm.conf" 2>/dev/null || true   # slurmd outlived SIGTERM here, controller gone
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "SLURM is not installed and cannot be installed here (needs root and apt-get)" >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }; } ||
        { echo "apt-get could not install slurmctld slurmd slurm-client munge" >&2; exit 3; }
fi

mkdir -p "$dir"/{spool,state,log}
for n in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/n$n"; done
chmod 755 "$dir"
# munge's socket directory and every parent must be world-executable (slurmd's job steps connect to it)
p=$dir; while [[ $p != / ]]; do chmod o+x "$p"; p=$(dirname "$p"); done
[[ -f $dir/munge.key ]] || mungekey -c -k "$dir/munge.key" >/dev/null 2>&1 ||
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$dir/munge.key"
munged -f --key-file="$dir/munge.key" --socket="$dir/munge.socket.2" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" 2>/dev/null || true

host=$(hostname -s)
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc alone obeys OMP_NUM_THREADS (the test lanes set 1)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$dir/slurm.conf" <<EOF
ClusterName=rsft
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket.2,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
SlurmctldPort=$(( 20000 + RANDOM % 20000 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
SchedulerParameters=bf_interval=5,sched_interval=5
MpiDefault=none
EOF
# each node claims every CPU of the host: a job of either shape (two tasks on a node, a task on each of two
# nodes) fits, and the kernel shares the real cores
port=$(( 40000 + RANDOM % 20000 ))
for n in $(seq 1 "$nodes"); do
    echo "NodeName=n$n NodeAddr=127.0.0.1 NodeHostname=$host Port=$(( port + n )) CPUs=$cpus RealMemory=$mem State=UNKNOWN"
done >> "$dir/slurm.conf"
echo "PartitionName=cpu Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP" >> "$dir/slurm.conf"
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" -i >/dev/null 2>&1 &
for n in $(seq 1 "$nodes"); do slurmd -f "$SLURM_CONF" -N "n$n" >/dev/null 2>&1 & done
for _ in $(seq 1 120); do
    if [[ $(sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated)') -eq $nodes ]]; then
        echo "$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "SLURM did not reach $nodes idle nodes within 60 s; logs in $dir/log" >&2
exit 1
