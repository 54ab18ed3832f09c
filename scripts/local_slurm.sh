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
# DLM_SLURM_MEM_MB (default 16000), DLM_SLURM_NODES (default 1).
# Facts this relies on (Slurm 22.05): the node is named localhost (slurmd -N localhost) since
# the hostname differs; linuxproc process tracking and no task plugin work without systemd.
# DLM_SLURM_NODES=N > 1 starts N slurmd on this machine (nodes n1..nN, one port each; Debian's
# build supports several slurmd per host), each announcing cpus/N CPUs, on their own ports
# (controller 16817) so that they run beside the one-node cluster; jobs there need
# MASTER_ADDR=127.0.0.1 (the node names do not resolve). It leaves /etc/slurm alone.
set -euo pipefail
dir=${DLM_SLURM_DIR:-/tmp/dlm-slurm}
cpus=${DLM_SLURM_CPUS:-$(nproc)}
mem=${DLM_SLURM_MEM_MB:-16000}
nodes=${DLM_SLURM_NODES:-1}
conf=$dir/slurm.conf
if [ "$nodes" -gt 1 ]; then
  names=$(seq -f "n%g" 1 "$nodes" | paste -sd, -)
  daemons="munged slurmctld $(seq -f "slurmd-n%g" 1 "$nodes" | paste -sd' ' -)"
else
  names=localhost
  daemons="munged slurmctld slurmd"
fi
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

node_lines() {  # the slurmd side of the config: one node, or N on their own ports
  if [ "$nodes" -gt 1 ]; then
    mkdir -p $(seq -f "$dir/spool/n%g" 1 "$nodes")
    echo "SlurmctldPort=16817"
    echo "SlurmdSpoolDir=$dir/spool/%n"
    echo "SlurmdPidFile=$dir/run/slurmd-%n.pid"
    echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
    for i in $(seq "$nodes"); do
      echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((17100 + i)) CPUs=$(( (cpus + nodes - 1) / nodes )) RealMemory=$((mem / nodes)) State=UNKNOWN"
    done
  else
    echo "SlurmdSpoolDir=$dir/spool"
    echo "SlurmdPidFile=$dir/run/slurmd.pid"
    echo "SlurmdLogFile=$dir/log/slurmd.log"
    echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  fi
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
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmctldLogFile=$dir/log/slurmctld.log
$(node_lines)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
OverTimeLimit=0
InactiveLimit=0
MinJobAge=600
PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP
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
  local d
  # munged may serve the other local cluster too: only the one-node cluster stops it
  for d in $(echo "$daemons" | tr ' ' '\n' | tac); do
    [ "$d" = munged ] && [ "$nodes" -gt 1 ] && continue
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
  local d node state
  if write_conf; then  # a changed config needs fresh daemons
    for d in $daemons; do
      [ "$d" = munged ] && continue
      running "$d" && kill "$(cat "$dir/run/$d.pid")" && sleep 1
    done
  fi
  [ "$nodes" -gt 1 ] || { mkdir -p /etc/slurm && ln -sfn "$conf" /etc/slurm/slurm.conf; }
  start_munge
  running slurmctld || slurmctld
  retry 100 sh -c 'scontrol ping | grep -q UP'
  for node in ${names//,/ }; do
    if [ "$nodes" -gt 1 ]; then running "slurmd-$node" || slurmd -N "$node"
    else running slurmd || slurmd -N "$node"; fi
    for _ in $(seq 150); do
      state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null | head -1 || true)
      case "$state" in
        idle*|mixed*|alloc*|completing*) break ;;
        down*|drain*|fail*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
      esac
      sleep 0.2
    done
  done
  sinfo -h -N -o "%N %T %c CPUs" 2>/dev/null || true
  echo "local slurm up in $((SECONDS - t0)) s: export SLURM_CONF=$conf"
}

case "${1:-}" in
  up) up ;;
  down) stop ;;
  status) for d in $daemons; do running "$d" && echo "$d: running ($(cat "$dir/run/$d.pid"))" || echo "$d: stopped"; done ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
