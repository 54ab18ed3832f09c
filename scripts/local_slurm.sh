#!/usr/bin/env bash
# A single-node Slurm "cluster" on this machine, for the Slurm tests and for trying
# auto_resubmit.sh / the submitit launcher on a laptop. Debian/Ubuntu, as root (CI, containers).
#
#   scripts/local_slurm.sh up      # install (apt) + start munge, slurmctld, slurmd; idempotent
#   scripts/local_slurm.sh down    # stop them (by the PIDs they wrote; nothing else is killed)
#   scripts/local_slurm.sh status
# Then: export SLURM_CONF=$DLM_SLURM_DIR/slurm.conf  (printed by `up`).
#
# Environment: DLM_SLURM_DIR (state, logs, pid files; default /tmp/dlm-slurm),
# DLM_SLURM_CPUS (CPUs announced; default nproc: more than real ones drains the node),
# DLM_SLURM_MEM_MB (default 16000).
# Facts this relies on (Slurm 22.05): the node is named localhost (slurmd -N localhost) since
# the hostname differs; linuxproc process tracking and no task plugin work without systemd.
set -euo pipefail
dir=${DLM_SLURM_DIR:-/tmp/dlm-slurm}
cpus=${DLM_SLURM_CPUS:-$(nproc)}
mem=${DLM_SLURM_MEM_MB:-16000}
conf=$dir/slurm.conf
export SLURM_CONF=$conf

running() { [ -f "$dir/run/$1.pid" ] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; }
retry() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

install_packages() {
  local missing=0
  for c in slurmctld slurmd sbatch squeue munged; do command -v "$c" >/dev/null || missing=1; done
  [ "$missing" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "local_slurm: Slurm is not installed and this is not root: apt-get install slurmctld slurmd slurm-client munge" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  mkdir -p "$dir"/{state,spool,log,run}
  cat > "$conf.new" <<CONF
ClusterName=dlmlocal
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
OverTimeLimit=0
InactiveLimit=0
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  if cmp -s "$conf.new" "$conf"; then rm "$conf.new"; return 1; fi
  mv "$conf.new" "$conf"
  return 0
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    head -c 1024 /dev/urandom > /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    runuser -u munge -- munged
    retry 50 sh -c 'munge -n | unmunge'
  fi
  cp /run/munge/munged.pid "$dir/run/munged.pid"
}

stop() {
  for d in slurmd slurmctld munged; do
    running "$d" || { rm -f "$dir/run/$d.pid"; continue; }
    pid=$(cat "$dir/run/$d.pid"); kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$dir/run/$d.pid"; echo "stopped $d ($pid)"
  done
}

up() {
  local t0=$SECONDS
  install_packages
  if write_conf; then  # a changed config needs fresh daemons
    for d in slurmd slurmctld; do running "$d" && kill "$(cat "$dir/run/$d.pid")" && sleep 1; done
  fi
  mkdir -p /etc/slurm && ln -sfn "$conf" /etc/slurm/slurm.conf
  start_munge
  running slurmctld || slurmctld
  retry 100 sh -c 'scontrol ping | grep -q UP'
  running slurmd || slurmd -N localhost
  for _ in $(seq 150); do
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -1 || true)
    case "$state" in
      idle*|mixed*|alloc*|completing*) break ;;
      down*|drain*|fail*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
  done
  sinfo -h -N -o "%N %T %c CPUs" 2>/dev/null || true
  echo "local slurm up in $((SECONDS - t0)) s: export SLURM_CONF=$conf"
}

case "${1:-}" in
  up) up ;;
  down) stop ;;
  status) for d in munged slurmctld slurmd; do running "$d" && echo "$d: running ($(cat "$dir/run/$d.pid"))" || echo "$d: stopped"; done ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
