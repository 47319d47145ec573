"""``python bench.py status RESULTS``: one table of a grid (done / running / pending / failed per run), the last
log lines of failed runs, then the leaderboard rebuilt from what is done. Reads only: run records,
``slurm.json`` / ``lock.json`` beside them, squeue/sacct where SLURM is reachable, submitit's logs. An unreadable
record is a row of its own (with its path and the fix), never an error."""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mtbench.records import RECORD_NAME, UNREADABLE_FIX, read_record, record_problem, runs_dir
from mtbench.runstate import (ACTIVE_STATES, CONFIG_FILE, RUNNING_STATES, RunLock, describe_holder, read_json,
                              slurm_jobs, summary)
from mtbench.slurm_query import query_slurm

STYLE = {"done": "green", "running": "cyan", "pending": "yellow", "failed": "red", "incomplete": "magenta",
         "unreadable": "red"}


@dataclass
class RunStatus:
    run_id: str
    method: str
    tasks: str
    seed: Any
    state: str  # done | running | pending | failed | incomplete | unreadable | unknown
    job: str  # SLURM job id and its state, "local pid N", or ""
    attempt: int
    detail: str
    log: list[str]  # the last log lines, for failed runs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", help="a results directory (holding runs/<run_id>/)")
    p.add_argument("--lines", type=int, default=10, help="log lines shown per failed run (default: 10)")
    p.add_argument("--no-leaderboard", action="store_true", help="only the table of runs")


def tail(path: str | Path | None, n: int) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-n:]]
    except (OSError, TypeError):
        return []


def last_line(path: str | Path | None, needle: str) -> str:
    lines = [line for line in tail(path, 200) if needle in line]
    return lines[-1].split("] ", 1)[-1].split(": ", 1)[-1] if lines else ""  # "[mtbench hh:mm:ss] <run id>: <msg>"


def read_run_record(run_dir: Path) -> tuple[dict, str | None]:
    """The run's record ({} if none) and, for a record that exists but cannot be used, why."""
    path = run_dir / RECORD_NAME
    if not path.exists():
        return {}, None
    try:
        record = read_record(path)
    except (ValueError, OSError) as e:
        return {}, f"{path} is not readable JSON ({e}); {UNREADABLE_FIX}"
    problem = record_problem(record)  # a failed record only needs to be a dict here: config.json names the run
    if problem and (not isinstance(record, dict) or record.get("status") == "done"):
        return {}, f"{path}: {problem}; {UNREADABLE_FIX}"
    return record, None


def collect(results_dir: Path, lines: int = 10) -> tuple[list[RunStatus], bool]:
    """Status of every run under ``results_dir/runs``; the flag says whether SLURM could be asked."""
    base = runs_dir(results_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"no runs in '{results_dir}' (looked for {base}); pass the --results directory of "
                                f"a grid")
    run_dirs = sorted(p for p in base.iterdir() if p.is_dir())
    jobs = {d.name: slurm_jobs(d) for d in run_dirs}
    states = query_slurm([j[-1]["job_id"] for j in jobs.values() if j])
    rows = []
    for d in run_dirs:
        record, unreadable = read_run_record(d)
        cfg = read_json(d / CONFIG_FILE) or (record.get("config") if isinstance(record.get("config"), dict) else {})
        if unreadable:
            rows.append(RunStatus(d.name, cfg.get("method", "?"), "+".join(cfg.get("tasks", [])), cfg.get("seed", "?"),
                                  "unreadable", "", 0, unreadable, []))
            continue
        if not cfg:
            continue
        job = jobs[d.name][-1] if jobs[d.name] else None
        holder = RunLock(d).holder()
        slurm_state = (states or {}).get(job["job_id"], "UNKNOWN") if job else ""
        attempt = max([int(record.get("attempt", 0))] + [int(j.get("attempt", 0)) for j in jobs[d.name]])
        job_text = f"{job['job_id']} {slurm_state}" if job else ""
        log: list[str] = []
        if record.get("status") == "done":
            state, detail = "done", summary(record) if "primary_metrics" in record else ""
            if record.get("resumed_from"):
                n = (record.get("slurm") or {}).get("preemptions", 0)
                detail += f" (resumed from it {record['resumed_from']}" + (f", {n} preemption(s))" if n else ")")
        elif job and slurm_state.upper() in ACTIVE_STATES:
            state = "running" if slurm_state.upper() in RUNNING_STATES else "pending"
            detail = last_line(job.get("stdout"), "iteration") if state == "running" else ""
        elif holder is not None:
            state, job_text, detail = "running", f"local pid {holder.get('pid', '?')}", describe_holder(holder)
        elif record.get("status") == "failed" or (job and states is not None):
            state = "failed"
            detail = record.get("error") if int(record.get("attempt", 0)) >= int((job or {}).get("attempt", 0)) \
                else f"SLURM job ended {slurm_state} without writing a record"
            log = (tail(job.get("stderr"), lines) or tail(job.get("stdout"), lines)) if job else \
                (record.get("traceback") or "").rstrip().splitlines()[-lines:]
        elif job:
            state, detail = "unknown", "SLURM cannot be queried from here (no squeue/sacct)"
        else:
            state = "incomplete"
            detail = "started, not finished; re-running the grid resumes it" if (d / "checkpoints").is_dir() \
                else "not started"
        rows.append(RunStatus(d.name, cfg.get("method", "?"), "+".join(cfg.get("tasks", [])), cfg.get("seed", "?"),
                              state, job_text, attempt, detail or "", log))
    return rows, states is not None


def render(rows: list[RunStatus], console: Console, title: str) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in [("run", {"overflow": "fold"}), ("method", {}), ("tasks", {}), ("seed", {"justify": "right"}),
                    ("state", {}), ("SLURM job", {}), ("attempt", {"justify": "right"}),
                    ("detail", {"overflow": "fold"})]:
        table.add_column(col, **kw)
    for r in rows:  # Text, not markup: details and paths may hold '[' and ']'
        table.add_row(*(Text(str(v)) for v in (r.run_id, r.method, r.tasks, r.seed)),
                      Text(r.state, style=STYLE.get(r.state, "white")),
                      *(Text(str(v)) for v in (r.job, r.attempt or "", r.detail)))
    console.print(table)
    for r in rows:
        if r.state == "failed" and r.log:
            console.print(f"\n{r.run_id} ({r.job or 'local'}), last log lines:", style="red", markup=False,
                          soft_wrap=True)
            console.print("\n".join(f"  {line}" for line in r.log), markup=False, highlight=False, soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    from mtbench.leaderboard import to_markdown, write_leaderboard

    console = Console()
    results_dir = Path(args.results_dir)
    rows, asked = collect(results_dir, args.lines)
    counts = Counter(r.state for r in rows)
    title = f"{results_dir}: {len(rows)} runs — " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    render(rows, console, Text(title))
    if not asked and any(r.job for r in rows):
        console.print("squeue is not reachable from here: SLURM states are unknown", style="yellow")
    if not args.no_leaderboard:
        tables, path = write_leaderboard(results_dir)
        console.print()
        for t in tables:
            console.print(to_markdown(t), markup=False, highlight=False)
        console.print(f"leaderboard written to {path}" if tables else "no finished runs yet", markup=False)
    return 0
