"""A sweep that survives a faulty cluster: launch a Hydra sweep through the submitit Slurm
launcher, throw faults at it while it runs, re-launch it until every point is done, and
check what it left.

Usage (a local two-node Slurm, scripts/local_slurm.sh, as root for the tmpfs):
    DLM_SLURM_NODES=2 DLM_SLURM_DIR=/tmp/dlm-slurm-2n scripts/local_slurm.sh up
    SLURM_CONF=/tmp/dlm-slurm-2n/slurm.conf python scripts/chaos_sweep.py --out /tmp/chaos

Faults (random targets, random order, seeded by --seed):
- scancel: a running job is cancelled;
- sigkill: a training process is SIGKILLed (OOM killer, segfault);
- drain: the node of a running job is drained, and resumed 30 s later;
- time_limit: a running job's time limit is cut; Slurm's own warning signal preempts it;
- duplicate: a running point is submitted a second time;
- disk_full: one point's run folder is a small tmpfs, filled to the last byte while it
  trains, and freed when its process has died (or after 45 s).
A fault's victim is re-launched the way a user would: the same sweep command again, which
skips finished points and resumes the others from their last checkpoint.

Checks at the end (exit 1 if any fails):
- every point has exactly one result.json (`collect_runs` lists exactly the points), equal
  to an undisturbed run of the same config in everything but timings, and its final
  checkpoint's weights and optimizer state bitwise equal to that run's;
- no two processes ever trained one run at once (a StepJournal line per step of every
  process, src/callbacks/step_journal.py).
Prints a table: runs, faults by kind, requeues, steps recomputed, wall time; writes it and
every event to OUT/chaos_report.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts are not a package

from src.callbacks.step_journal import journal_file
from src.cluster import chaos_checks
from src.cluster.faults import FAULT_KINDS, Injector, Training, alive, job_fields, training_runs
from src.cluster.slurm_queue import BeginTimeRelease, squeue

NAME = "chaos"  # Slurm job name of the sweep's jobs
DUPLICATE_NAME = "chaos-duplicate"
DEFAULT_FAULTS = "disk_full=1,scancel=2,sigkill=1,time_limit=2,drain=1,duplicate=1"
SIGNAL_DELAY_S = 90  # submitit's warning signal this long before a job's time limit


def run_overrides(root: Path, steps: int) -> list[str]:
    """A tiny fp32 run (bitwise reproducible on CPU) of `steps` steps under `root`."""
    return ["model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
            "data.eval_batch_size=16", f"training.max_steps={steps}",
            "training.ckpt_every_n_steps=10", f"training.val_every_n_steps={steps // 2}",
            "training.val_max_batches=2", "trainer.precision=32-true",
            "trainer.log_every_n_steps=10", "trainer.enable_progress_bar=false",
            "eval.num_samples=0", f"paths.log_dir={root}", f"paths.cache_dir={root.parent}/cache"]


def witness_overrides(out: Path, pace_s: float) -> list[str]:
    """The journal (who trained when) and the pace (runs long enough to be hit)."""
    return ["+callbacks.journal._target_=src.callbacks.step_journal.StepJournal",
            f"+callbacks.journal.folder={out}/journal",
            "+callbacks.pace._target_=src.callbacks.step_pace.SlowSteps",
            f"+callbacks.pace.seconds={pace_s}"]


def sweep_command(out: Path, args: argparse.Namespace, axes: dict[str, list[str]], name: str,
                  sweep_dir: Path) -> list[str]:
    launcher = ["hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.timeout_min=10", f"hydra.launcher.signal_delay_s={SIGNAL_DELAY_S}",
                "hydra.launcher.max_num_timeout=30", f"hydra.launcher.name={name}",
                f"hydra.sweep.dir={sweep_dir}"]
    return [sys.executable, "-m", "src.train", "-m", *launcher,
            *run_overrides(out / "runs", args.steps), *witness_overrides(out, args.pace),
            *[f"{k}={','.join(v)}" for k, v in axes.items()]]


def parse_faults(text: str) -> list[str]:
    """"kind=count,..." as a list with each kind `count` times (unknown kinds refused)."""
    plan = []
    for item in filter(None, text.split(",")):
        kind, _, count = item.partition("=")
        if kind not in FAULT_KINDS:
            raise SystemExit(f"error: --faults: unknown kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        plan += [kind] * int(count or 1)
    return plan


class Chaos:
    """The driver: launches, watches the queue, injects faults, re-launches."""

    def __init__(self, args: argparse.Namespace) -> None:
        from src.runs.identity import resolve_run_dir

        self.args, self.out = args, args.out.resolve()
        # One thread a process, in the jobs (sbatch passes the environment on) and in the
        # reference runs alike: fp32 sums in another order would not be bitwise equal.
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        seeds = [str(s) for s in range(args.points // 2)]
        self.axes = {"algo": ["ar", "mdlm"], "seed": seeds}
        self.points = [dict(zip(self.axes, values)) for values in itertools.product(*self.axes.values())]
        base = run_overrides(self.out / "runs", args.steps)
        self.run_dirs = [resolve_run_dir([*base, *(f"{k}={v}" for k, v in p.items())]).resolve()
                         for p in self.points]
        ref = run_overrides(self.out / "reference", args.steps)
        self.reference_dirs = [resolve_run_dir([*ref, *(f"{k}={v}" for k, v in p.items())])
                               for p in self.points]
        self.rng = random.Random(args.seed)
        self.plan = parse_faults(args.faults)
        self.rng.shuffle(self.plan)
        self.injector = Injector(self.env)
        self.release = BeginTimeRelease(self.env)
        self.disk_victim = self.run_dirs[1] if "disk_full" in self.plan else None
        self.launches: list[dict[str, Any]] = []
        self.requeues: list[dict[str, Any]] = []
        self.duplicates: list[tuple[subprocess.Popen, Path]] = []
        self._states: dict[str, str] = {}  # job -> its state at the last look
        self._prioritized: set[str] = set()
        self._idle: dict[str, float] = {}  # launcher -> when one of its jobs was last queued
        self._hit: dict[str, float] = {}  # run folder -> when a fault last hit it

    # ---- set-up and tear-down -----------------------------------------------------------------
    def mount_disk(self) -> None:
        assert self.disk_victim is not None
        self.disk_victim.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.args.disk_mb}m", "tmpfs",
                        str(self.disk_victim)], check=True, capture_output=True)

    def unmount_disk(self) -> None:
        """Move the tmpfs run folder's files onto the disk (the checks read them later)."""
        if self.disk_victim is None or not os.path.ismount(self.disk_victim):
            return
        keep = self.out / ".tmpfs-copy"
        shutil.copytree(self.disk_victim, keep, symlinks=True, dirs_exist_ok=True)
        subprocess.run(["umount", str(self.disk_victim)], check=True)
        shutil.copytree(keep, self.disk_victim, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(keep)

    def start_references(self) -> subprocess.Popen:
        """The undisturbed runs: the same points, one local process after another."""
        command = [sys.executable, "-m", "src.train", "-m",
                   *run_overrides(self.out / "reference", self.args.steps),
                   f"hydra.sweep.dir={self.out}/reference-sweep",
                   *[f"{k}={','.join(v)}" for k, v in self.axes.items()]]
        with open(self.out / "reference.log", "w") as log:  # the child keeps its own copy
            return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def launch(self) -> subprocess.Popen:
        n = len(self.launches)
        log = self.out / f"launch{n}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(sweep_command(self.out, self.args, self.axes, NAME,
                                                  self.out / "sweep" / f"launch{n}"),
                                    cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        self.launches.append({"start": time.time(), "log": str(log), "returncode": None})
        return proc

    # ---- one tick of the watch --------------------------------------------------------------
    def watch_queue(self) -> list[dict[str, str]]:
        queue = squeue(self.env)
        for job in queue:
            before = self._states.get(job["job"])
            if before in ("RUNNING", "COMPLETING") and job["state"] == "PENDING":
                self.requeues.append({"job": job["job"], "id": job["id"], "time": time.time()})
            self._states[job["job"]] = job["state"]
        self.release(queue)
        self.injector.restore_time_limits(queue)
        return queue

    def maintain(self) -> None:
        """End the faults that last: resume a drained node, free a filled disk."""
        inj = self.injector
        for node, since in list(inj.drained.items()):
            if time.time() - since > 30:
                inj.undrain(node)
        if inj.ballast_victim is not None:
            if not alive(inj.ballast_victim.pid):
                inj.free_disk("its process ended")
            elif time.time() - inj.ballast_since > 45:
                inj.free_disk("45 s passed, its process still alive")

    def progress(self, run_dir: Path) -> int:
        """The last step the run's journal shows (0 before its first)."""
        path = journal_file(self.out / "journal", run_dir)
        try:
            return int(json.loads(path.read_text().splitlines()[-1])["step"])
        except (OSError, IndexError, ValueError, KeyError):
            return 0

    def candidates(self) -> list[Training]:
        """Running trainings a fault may hit: in the first 60% of their steps (so that a
        fault lands mid-run), not the tmpfs run, not hit in the last 20 s."""
        return [t for t in training_runs(self.out / "runs")
                if t.job and t.run_dir != self.disk_victim
                and self.progress(t.run_dir) < 0.6 * self.args.steps
                and time.time() - self._hit.get(str(t.run_dir), -1e9) > 20]

    def inject(self, kind: str, run: Training) -> None:
        inj = self.injector
        self._hit[str(run.run_dir)] = time.time()
        if kind == "scancel":
            inj.scancel(run)
        elif kind == "sigkill":
            inj.sigkill(run)
        elif kind == "drain":
            inj.drain(job_fields(self.env, str(run.job))["NodeList"])
        elif kind == "time_limit":
            inj.time_limit(run, SIGNAL_DELAY_S)
        elif kind == "duplicate":
            point = self.points[self.run_dirs.index(run.run_dir)]
            axes = {k: [v] for k, v in point.items()}
            n = len(self.duplicates)
            command = sweep_command(self.out, self.args, axes, DUPLICATE_NAME,
                                    self.out / "sweep" / f"duplicate{n}")
            proc = inj.duplicate(run, command, self.out / f"duplicate{n}.log")
            self.duplicates.append((proc, self.out / "sweep" / f"duplicate{n}"))
        print(f"[chaos] {time.strftime('%T')} {kind}: {inj.faults[-1].target} "
              f"{inj.faults[-1].detail}", flush=True)

    def maybe_inject(self, next_at: float) -> float:
        """Inject the next planned fault if one is due and has a target; the next due time."""
        if time.time() < next_at or not self.plan:
            return next_at
        if "disk_full" in self.plan:
            victim = next((t for t in training_runs(self.out / "runs")
                           if t.run_dir == self.disk_victim), None)
            if victim and (victim.run_dir / "checkpoints" / "last.ckpt").exists():
                self.plan.remove("disk_full")
                self.injector.fill_disk(victim)
                print(f"[chaos] {time.strftime('%T')} disk_full: {victim.run_dir}", flush=True)
                return time.time() + self.rng.uniform(*self.args.gap)
        runs = self.candidates()
        kinds = [k for k in self.plan if k != "disk_full"
                 and not (k == "drain" and self.injector.drained)]
        if not runs or not kinds:
            return next_at
        kind = self.rng.choice(kinds)
        try:
            self.inject(kind, self.rng.choice(runs))
        except (OSError, RuntimeError, KeyError) as e:  # the target ended in between
            print(f"[chaos] {time.strftime('%T')} {kind} missed its target ({e}); retrying",
                  flush=True)
            return time.time() + 1
        self.plan.remove(kind)
        return time.time() + self.rng.uniform(*self.args.gap)

    def prioritize_duplicates(self, queue: list[dict[str, str]]) -> None:
        """A duplicate waits behind the sweep's pending jobs otherwise: start it next, so that
        it meets its point while that one still trains."""
        for job in queue:
            if job["name"] == DUPLICATE_NAME and job["state"] == "PENDING" \
                    and job["job"] not in self._prioritized:
                subprocess.run(["scontrol", "update", f"JobId={job['job']}",
                                "Priority=4294967000"], env=self.env, capture_output=True,
                               check=False)
                self._prioritized.add(job["job"])

    def stop_waiting_launcher(self, proc: subprocess.Popen | None, name: str,
                              queue: list[dict[str, str]]) -> bool:
        """Stop a launcher that only waits: submitit learns that a job ended from sacct,
        and without accounting (the local cluster) a launcher whose job was cancelled or
        killed waits for it forever. Once its jobs were queued and none has been for 30 s,
        it is stopped (its points are finished or re-launched). True if it was."""
        if proc is None or proc.poll() is not None:
            return False
        key = f"{name}:{proc.pid}"
        if any(j["name"] == name for j in queue):
            self._idle[key] = time.time()  # seen queued: count from its last job's exit
            return False
        if key in self._idle and time.time() - self._idle[key] > 30:
            proc.terminate()
            proc.wait()
            return True
        return False

    # ---- the whole sweep ----------------------------------------------------------------------
    def done(self) -> bool:
        return all((d / "result.json").exists() for d in self.run_dirs)

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.disk_victim is not None:
            self.mount_disk()
        references = self.start_references()
        proc: subprocess.Popen | None = None
        next_at = t0 + self.args.first_fault_s
        try:
            while True:
                if time.time() - t0 > self.args.timeout:
                    raise TimeoutError(f"the sweep did not finish in {self.args.timeout} s")
                queue = self.watch_queue()
                self.prioritize_duplicates(queue)
                self.maintain()
                next_at = self.maybe_inject(next_at)
                for dup, _ in self.duplicates:
                    self.stop_waiting_launcher(dup, DUPLICATE_NAME, queue)
                if self.stop_waiting_launcher(proc, NAME, queue):
                    self.launches[-1]["stopped_waiting"] = True
                if proc is not None and proc.poll() is not None:
                    self.launches[-1]["returncode"] = proc.returncode
                    self.launches[-1]["end"] = time.time()
                    proc = None
                if proc is None and not any(j["name"] == NAME for j in queue):
                    if self.done() and all(p.poll() is not None for p, _ in self.duplicates):
                        break
                    if not self.done():
                        if len(self.launches) >= self.args.max_launches:
                            raise RuntimeError(f"{self.args.max_launches} launches and points "
                                               f"still unfinished")
                        proc = self.launch()
                time.sleep(1)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if self.injector.ballast is not None:
                self.injector.free_disk("sweep over")
            for node in list(self.injector.drained):
                self.injector.undrain(node)
        wall = time.time() - t0
        self.unmount_disk()
        references.wait()
        return self.report(wall)

    # ---- the checks and the table ----------------------------------------------------------------
    def report(self, wall: float) -> dict[str, Any]:
        from src.resume.checkpoint_file import load_checkpoint_file
        from src.scaling.collect import collect_runs

        journals = chaos_checks.read_journals(self.out / "journal")
        points = []
        for point, run_dir, ref_dir in zip(self.points, self.run_dirs, self.reference_dirs):
            rows = journals.get(str(run_dir.resolve()), [])
            found = chaos_checks.sessions(rows)
            mine, ref = _json(run_dir / "result.json"), _json(ref_dir / "result.json")
            state = (chaos_checks.state_differences(
                load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt"),
                load_checkpoint_file(ref_dir / "checkpoints" / "last.ckpt"))
                if mine and ref else ["missing"])
            points.append({
                **point, "run_dir": str(run_dir), "results": len(list(run_dir.glob("result.json"))),
                "result_differences": chaos_checks.result_differences(mine, ref) if mine and ref
                else ["missing"], "state_differences": state,
                "sessions": len(found), "overlaps": len(chaos_checks.overlaps(found)),
                "steps_journaled": len(rows), "steps_recomputed": chaos_checks.steps_recomputed(rows),
            })
        listed = collect_runs(self.out / "runs").table
        listed_dirs = sorted(str((self.out / "runs" / d).resolve()) for d in listed["run_dir"])
        duplicates = [_duplicate_outcome(d) for _, d in self.duplicates]
        counts = {k: sum(f.kind == k for f in self.injector.faults) for k in FAULT_KINDS}
        checks = {
            "one result.json per point": all(p["results"] == 1 for p in points),
            "equal to undisturbed runs": all(not p["result_differences"] and
                                             not p["state_differences"] for p in points),
            "never two trainers at once": all(p["overlaps"] == 0 for p in points),
            "collect_runs lists exactly the points":
                listed_dirs == sorted(str(d.resolve()) for d in self.run_dirs),
            "every planned fault injected": not self.plan,
        }
        return {"points": points, "faults": self.injector.as_dict(), "fault_counts": counts,
                "requeues": self.requeues, "launches": self.launches, "duplicates": duplicates,
                "steps_recomputed": sum(p["steps_recomputed"] for p in points),
                "steps": self.args.steps * len(points), "sessions": sum(p["sessions"] for p in points),
                "wall_time_s": wall, "checks": checks, "passed": all(checks.values()),
                "not_injected": list(self.plan)}


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _duplicate_outcome(sweep_dir: Path) -> str:
    """What the duplicate submission's job did, from its logs."""
    logs = "".join(p.read_text(errors="replace") for pattern in ("*.err", "*.out")
                   for p in sweep_dir.rglob(pattern))
    if "is being trained by" in logs:
        return "refused: the run was being trained (lock)"
    if "run already finished" in logs:
        return "found the run finished; nothing to do"
    if "resuming from" in logs:
        return "trained the run while no other process did (took over after a fault)"
    return "no outcome in its logs"


def table(report: dict[str, Any]) -> str:
    runs = len(report["points"])
    stopped = sum(bool(launch.get("stopped_waiting")) for launch in report["launches"])
    waiting = f" ({stopped} stopped waiting on jobs gone from the queue)" if stopped else ""
    title = f"chaos sweep: {runs} runs x {report['steps'] // runs} steps, submitit Slurm launcher"
    lines = [title, f"{'faults injected':<34}{sum(report['fault_counts'].values()):>8}"]
    lines += [f"  {kind:<32}{n:>8}" for kind, n in report["fault_counts"].items()]
    lines += [f"{'requeues (seen in the queue)':<34}{len(report['requeues']):>8}",
              f"{'sweep launches':<34}{len(report['launches']):>8}" + waiting,
              f"{'training processes':<34}{report['sessions']:>8}",
              f"{'steps recomputed':<34}{report['steps_recomputed']:>8} of {report['steps']}",
              f"{'wall time':<34}{report['wall_time_s']:>7.0f}s"]
    lines += [f"duplicate submission: {d}" for d in report["duplicates"]]
    lines += [f"check: {name}: {'ok' if ok else 'FAILED'}" for name, ok in report["checks"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="scratch folder (runs, logs, report)")
    p.add_argument("--points", type=int, default=12, help="sweep points (algo ar,mdlm x seeds)")
    p.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    p.add_argument("--pace", type=float, default=0.3, help="seconds of sleep after each step")
    p.add_argument("--faults", default=DEFAULT_FAULTS, help=f"kind=count,... ({DEFAULT_FAULTS})")
    p.add_argument("--seed", type=int, default=0, help="seeds the faults' order and targets")
    p.add_argument("--gap", type=float, nargs=2, default=(6.0, 14.0),
                   help="seconds between faults, drawn uniformly")
    p.add_argument("--first-fault-s", type=float, default=25.0)
    p.add_argument("--disk-mb", type=int, default=48, help="size of the tmpfs of disk_full")
    p.add_argument("--max-launches", type=int, default=8)
    p.add_argument("--timeout", type=float, default=2400.0)
    args = p.parse_args(argv)
    if args.points < 2 or args.points % 2:
        raise SystemExit("error: --points must be even (algo ar,mdlm x points/2 seeds)")
    if shutil.which("squeue") is None or "SLURM_CONF" not in os.environ:
        raise SystemExit("error: no Slurm to talk to: start one with DLM_SLURM_NODES=2 "
                         "scripts/local_slurm.sh up and export the SLURM_CONF it prints")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: --out {args.out} is not empty: pick a new folder (a chaos "
                         f"sweep starts from nothing)")
    report = Chaos(args).run()
    (args.out / "chaos_report.json").write_text(json.dumps(report, indent=1, default=str))
    print(table(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
