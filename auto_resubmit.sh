#!/usr/bin/env bash
# Chain N dependent Slurm jobs (afterany) for ONE training run, so that it trains across
# time limits and preemptions until it has spent its budget. Each job resumes from the run
# directory's latest checkpoint; once the run is finished (result.json), later jobs exit at
# once. Takes flags and environment variables only: partition / account / QoS come from
# sbatch's own SBATCH_PARTITION / SBATCH_ACCOUNT / SBATCH_QOS variables.
#
#   ./auto_resubmit.sh -n 5 -- algo=mdlm model=113M data=openwebtext training.flops_budget=6e18
#   ./auto_resubmit.sh --dry-run -n 3 --time 00:30:00 -- algo=ar model=19M
#
# Flags (environment variable in brackets):
#   -n, --jobs N        jobs in the chain [DLM_RESUBMIT_JOBS, default 5]
#   -t, --template F    sbatch script [DLM_SBATCH_TEMPLATE, default scripts/slurm/gpu.sbatch]
#       --time T        time limit of each job (sbatch --time), else the template's
#       --sbatch ARG    one more sbatch argument, repeatable (e.g. --sbatch=--nodes=2)
#       --name NAME     job name (default: dlm-<hash of the run directory>)
#       --dry-run       print the sbatch commands, submit nothing
#   -h, --help
# Everything after `--` is passed to `python -m src.train` unchanged (Hydra overrides).
# Exit codes: 0 submitted or nothing to do (already queued / finished), 2 bad usage.
set -euo pipefail
# Jobs run in the directory you submit from (relative paths in overrides, and the default
# runs/ root, mean the same there as here); the code is found through DLM_REPO/PYTHONPATH.
export DLM_REPO=${DLM_REPO:-$(cd "$(dirname "$0")" && pwd)}
export PYTHONPATH="$DLM_REPO${PYTHONPATH:+:$PYTHONPATH}"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "auto_resubmit: $*" >&2; exit 2; }

jobs=${DLM_RESUBMIT_JOBS:-5}
template=${DLM_SBATCH_TEMPLATE:-$DLM_REPO/scripts/slurm/gpu.sbatch}
python=${DLM_PYTHON:-python}
time_limit="" name="" dry_run=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--jobs) [ $# -ge 2 ] || die "$1 needs a number"; jobs=$2; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    -t|--template) [ $# -ge 2 ] || die "$1 needs a file"; template=$2; shift 2 ;;
    --template=*) template=${1#*=}; shift ;;
    --time) [ $# -ge 2 ] || die "--time needs a value"; time_limit=$2; shift 2 ;;
    --time=*) time_limit=${1#*=}; shift ;;
    --sbatch) [ $# -ge 2 ] || die "--sbatch needs a value"; extra+=("$2"); shift 2 ;;
    --sbatch=*) extra+=("${1#*=}"); shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; name=$2; shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown flag '$1': put Hydra overrides after '--' (see --help)" ;;
  esac
done
overrides=("$@")
case "$jobs" in ''|*[!0-9]*|0) die "-n must be a positive integer, got '$jobs'" ;; esac
[ -f "$template" ] || die "no sbatch template '$template': pass -t $DLM_REPO/scripts/slurm/<name>.sbatch"

# The run's identity: its deterministic run directory (the same one src.train resolves).
run_dir=$("$python" -m src.run_dir "${overrides[@]}") || exit 2
[ -n "$name" ] || name=$("$python" -m src.run_dir --job-name "${overrides[@]}") || exit 2

if [ -f "$run_dir/result.json" ]; then
  echo "run already finished: $run_dir (result.json exists); nothing to submit"
  exit 0
fi
if command -v squeue >/dev/null 2>&1; then
  queued=$(squeue -h -u "${USER:-$(id -un)}" -n "$name" \
             -t PENDING,RUNNING,CONFIGURING,REQUEUED,RESIZING,SUSPENDED -o %i | paste -sd, -)
  if [ -n "$queued" ]; then
    echo "jobs for this run are already queued or running ($name: $queued); not submitting again"
    exit 0
  fi
elif [ "$dry_run" = 0 ]; then
  die "squeue not found: run this on a Slurm login node (or use --dry-run)"
fi

[ "$dry_run" = 1 ] || mkdir -p "$run_dir"
prev=""
for i in $(seq 1 "$jobs"); do
  cmd=(sbatch --parsable --job-name="$name" --output="$run_dir/slurm-%j.out" --open-mode=append)
  [ -z "$time_limit" ] || cmd+=(--time="$time_limit")
  [ -z "$prev" ] || cmd+=(--dependency="afterany:$prev")
  cmd+=("${extra[@]}" "$template" "${overrides[@]}")
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "${cmd[@]}"; echo
    prev="JOB$i"  # the id sbatch would print
  else
    prev=$("${cmd[@]}")
    prev=${prev%%;*}  # --parsable prints "id" or "id;cluster"
    echo "submitted job $i/$jobs: $prev"
  fi
done
echo "run dir: $run_dir   job name: $name"
