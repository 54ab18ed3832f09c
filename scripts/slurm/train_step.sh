#!/usr/bin/env bash
# The body of every sbatch template: run `python -m src.train "$@"` as a job step and turn
# the scheduler's stop signals into a clean checkpoint-and-exit.
#
# Slurm sends `--signal=B:USR1@<s>` to this batch shell only, and TERM at the time limit or
# on preemption. We forward both to the training step; src.train saves a checkpoint at the
# next optimizer step and exits 75 ("stopped, resume me"). The next job of the chain
# (auto_resubmit.sh) resumes from it. Exit code: that of src.train (0 finished, 75 stopped
# early with a checkpoint, anything else an error; the next job retries from the checkpoint).
#
# Environment: DLM_PYTHON (default python), DLM_SRUN=0 runs without srun (one task),
# DLM_DEFAULT_TRAINER (set by the template) is added unless the overrides pick a trainer.
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
repo=${DLM_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

args=("$@")
if [ -n "${DLM_DEFAULT_TRAINER:-}" ] && ! printf '%s\n' "${args[@]}" | grep -q '^trainer='; then
  args=("trainer=$DLM_DEFAULT_TRAINER" "${args[@]}")
fi
launch=()
if [ "${DLM_SRUN:-1}" != 0 ] && [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null; then
  launch=(srun --kill-on-bad-exit=1)
fi

echo "[job ${SLURM_JOB_ID:-local}] $(date -u +%FT%TZ) on $(hostname): ${launch[*]} ${DLM_PYTHON:-python} -m src.train ${args[*]}"
"${launch[@]}" "${DLM_PYTHON:-python}" -m src.train "${args[@]}" &
child=$!
forwarded=0
forward() {
  forwarded=1
  echo "[job ${SLURM_JOB_ID:-local}] $(date -u +%FT%TZ) $1: asking the training step to checkpoint and stop"
  kill -s "$1" "$child" 2>/dev/null || true
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
# `wait` returns early (status > 128) whenever a trapped signal arrives: wait again until the
# step has really exited, then collect its status (bash keeps it after the child is reaped).
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"
rc=$?
# Several tasks (multi-node): the first rank to exit 75 after a forwarded stop makes srun
# (--kill-on-bad-exit) kill the others, so srun reports their signal (e.g. 143), not 75.
if [ "$forwarded" = 1 ] && [ "$rc" -gt 128 ]; then rc=75; fi
case "$rc" in
  0) echo "[job ${SLURM_JOB_ID:-local}] run finished (or was already finished)" ;;
  75) echo "[job ${SLURM_JOB_ID:-local}] stopped early with a checkpoint: the next job resumes" ;;
  *) echo "[job ${SLURM_JOB_ID:-local}] training exited with $rc: the next job retries from the latest checkpoint" ;;
esac
exit "$rc"
