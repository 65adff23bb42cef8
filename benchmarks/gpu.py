"""The GPU path, measured: one prepared command for a GPU machine (docs/gpu.md).

    python benchmarks/gpu.py --out DIR              # all parts, about 8 minutes on one H200
    python benchmarks/gpu.py --quick --out DIR      # a one-minute smoke run of every part
    python benchmarks/gpu.py --device cpu --out DIR # the same code at small scale, on the CPU
    python benchmarks/gpu.py --part gap,pretrain    # some parts only

Parts, in order (each writes its results before the next starts, so a run cut off still
returns what it finished):

- ``tests``: the CUDA tests (``pytest -o addopts= -m cuda tests/test_cuda.py``) on the device.
- ``speed``: the device beside this machine's CPU on one thread (measured in a second
  process while the device works): training steps/s of the default model at batch 1k,
  10k and 100k, eager and as a CUDA graph (capture time apart); the default model's 2,000
  steps; the time to a usable model (benchmarks/train_speed.py's criterion); sampling 4,000
  and 1,000,000 points at 20 NFE; Aithal et al.'s protocol on 100k samples and Deveney et
  al.'s on 300k (the CPU's two timed on two slices and extrapolated, and labelled so).
- ``grid``: the grid model's paper recipe (``grid_config("paper")``: 100k steps of batch
  10k) as a speed row, against its budget.
- ``gap``: Deveney et al.'s network at w = 0 and w = 1 at their scale (100k steps, batch
  200k, 50k collocation points), as far as the budget goes: a run that does not finish
  leaves its state in the results, and the next run resumes it from ``--state-dir``
  (commit the state to pretrain-state/ in between); then their protocol on 300k samples.
- ``pretrain``: the shipped data-set models against their noise floor: exact W2 of 4,000
  samples (DPM-Solver++(2M), 20 NFE; DDPM, 1,000 steps) to 4,000 draws of the law at the
  sampler's end, over the W2 between two such draws; a model above 1.1 is retrained longer
  (``lab.pretrained.recipes.pretrain`` with more steps and a larger batch) until it is not.

What comes back: DIR/report.md (the tables), DIR/results.json, DIR/gpu-results.tar.gz
(both, the test log, and every model and state the run wrote, to commit).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
PARTS = ("tests", "speed", "grid", "gap", "pretrain")
FLOOR_TARGET = 1.1        # W2 to the truth over the noise floor, at most (both samplers)
GAP_RUN = dict(steps=100_000, batch_size=200_000, fp_points=50_000)   # Deveney et al.'s scale


@dataclasses.dataclass
class Scale:
    """How much each part does: ``FULL`` on a GPU, ``SMALL`` for --quick and the CPU."""

    train_steps: dict      # batch size -> steps timed on the device (the CPU times fewer)
    cpu_train_steps: dict
    default_steps: int     # the default model's run (TrainConfig.steps)
    usable_steps: int      # train_speed.py's run length
    big_sample: int        # the large sampling row
    halluc_n: int          # Aithal et al.'s protocol
    gap_n: int             # Deveney et al.'s protocol
    cpu_slice: int         # the CPU's protocols are timed on this and twice this, then extrapolated
    grid_budget_s: float   # the grid's paper recipe
    grid_log_every: int    # its reports (where the budget is looked at)
    gap_budget_s: float    # training time per gap model and run
    gap_run: dict          # the gap models' scale
    gap_eval_n: int
    ladder: tuple          # the longer recipes the pretrain part tries, in order
    pretrain_budget_s: float
    datasets: tuple | None  # None: every shipped data set but the grid
    tests_timeout_s: float


FULL = Scale(train_steps={1_000: 2000, 10_000: 1000, 100_000: 300},
             cpu_train_steps={1_000: 300, 10_000: 40, 100_000: 6},
             default_steps=2000, usable_steps=3000, big_sample=1_000_000, halluc_n=100_000,
             gap_n=300_000, cpu_slice=500, grid_budget_s=60.0, grid_log_every=500, gap_budget_s=75.0, gap_run=GAP_RUN,
             gap_eval_n=300_000,
             ladder=(dict(steps=10_000, batch_size=4096), dict(steps=40_000, batch_size=8192),
                     dict(steps=100_000, batch_size=16_384)),
             pretrain_budget_s=100.0, datasets=None, tests_timeout_s=240.0)
SMALL = Scale(train_steps={1_000: 60, 10_000: 20, 100_000: 4},
              cpu_train_steps={1_000: 30, 10_000: 10, 100_000: 3},
              default_steps=100, usable_steps=300, big_sample=20_000, halluc_n=400,
              gap_n=600, cpu_slice=100, grid_budget_s=8.0, grid_log_every=5, gap_budget_s=3.0,
              gap_run=dict(steps=400, batch_size=500, fp_points=100), gap_eval_n=1000,
              ladder=(dict(steps=200, batch_size=512),), pretrain_budget_s=20.0,
              datasets=("ring",), tests_timeout_s=600.0)


# --- results, kept as they come ---------------------------------------------------------
class Results:
    """The run's results: a dict written to results.json, report.md (the tables) and the
    archive after every part: the only three files in ``out`` (a device machine returns a
    few files of $OUT). ``work``, where the parts write, is elsewhere; the archive holds it
    but for the retraining runs' own folders (their kept models are in work/models)."""

    def __init__(self, out: Path, work: Path, meta: dict):
        self.out, self.work = out, work
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.data = {"meta": meta}
        self.lines: list[str] = []

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, head: list[str], rows: list[list]) -> None:
        self.say("| " + " | ".join(head) + " |")
        self.say("|" + "---|" * len(head))
        for r in rows:
            self.say("| " + " | ".join(str(c) for c in r) + " |")
        self.say()

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "report.md").write_text("\n".join(self.lines) + "\n")
        tmp = self.out / "gpu-results.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for name in ("results.json", "report.md"):
                tar.add(self.out / name, arcname=name)
            tar.add(self.work, arcname="work",
                    filter=lambda info: None if "/pretrain-runs" in info.name else info)
        tmp.replace(self.out / "gpu-results.tar.gz")


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn):
    """(seconds, result) of fn(), the device's queue drained before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


# --- part: tests ----------------------------------------------------------------------------
def part_tests(res: Results, device: str, scale: Scale, args) -> None:
    log = res.work / "tests.txt"
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           "-p", "no:benchmark",
           "-rfEs", str(ROOT / "tests" / "test_cuda.py")]
    env = dict(os.environ, LAB_CUDA_TEST_DEVICE=device, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=scale.tests_timeout_s)
        text, code = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        text, code = (out.decode() if isinstance(out, bytes) else out) + "\n(timed out)", "timeout"
    log.write_text(text)
    summary = [ln.strip("= ") for ln in text.splitlines()
               if re.search(r"\d+ (passed|failed|skipped|error)", ln) and " in " in ln]
    last = summary[-1:] or [f"no test summary ({(text.strip().splitlines() or ['no output'])[-1][:200]})"]
    res.data["tests"] = {"returncode": code, "summary": last[0], "seconds": round(time.perf_counter() - t0, 1)}
    res.say(f"## CUDA tests on {device}\n\n`{' '.join(cmd[1:])}`: {last[0]} (exit {code})\n")
    failures = [ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    for ln in failures[:20]:
        res.say(f"- {ln}")
    if failures:
        res.say()


# --- part: speed ------------------------------------------------------------------------------
def speed_rows(device: str, scale: Scale, column: str) -> dict:
    """The speed table's rows for one column: {row: (value, note)}. ``column`` "device"
    times eager and captured training; "cpu" times eager on one thread, the protocols on
    slices (extrapolated)."""
    from train_speed import time_to_usable

    from lab.data import dataset_mixture, make_dataset
    from lab.fields import MixtureField
    from lab.hallucination import end_law, score_samples
    from lab.metrics import gap_binned
    from lab.pretrained import gap_path, load_pretrained
    from lab.solvers import sample
    from lab.train import TrainConfig, load, train

    cpu = column == "cpu"
    graphs = (False, True) if torch.device(device).type == "cuda" else (False,)
    rows = {}
    x = make_dataset("ring", n=20_000, seed=0)
    train(x[:2000], TrainConfig(steps=5, device=device, log_every=5))     # warm: kernels, allocator
    for batch, steps in (scale.cpu_train_steps if cpu else scale.train_steps).items():
        for graph in graphs:
            cfg = TrainConfig(steps=steps, batch_size=batch, device=device, cuda_graph=graph, log_every=steps)
            s = train(x, cfg)[1]["summary"]
            name = f"train steps/s, batch {batch // 1000}k" + (", CUDA graph" if graph else "")
            rows[name] = (steps / max(s["train_s"] - s["capture_s"], 1e-9),
                          f"capture {s['capture_s']:.2f} s" if graph else "")
    for graph in graphs:
        s = train(x, TrainConfig(steps=scale.default_steps, device=device, cuda_graph=graph))[1]["summary"]
        rows[f"default model, {scale.default_steps:,} steps (s)" + (", CUDA graph" if graph else "")] = (
            s["train_s"] - s["capture_s"], f"+ capture {s['capture_s']:.2f} s" if graph else "")
    exact = MixtureField(dataset_mixture("ring"), "vp")
    r = time_to_usable(x, TrainConfig(device=device, steps=scale.usable_steps), exact)
    rows["time to a usable model (s)"] = (r["usable_s"], f"step {r['usable_step']}" if r["usable_s"] else
                                          f"not reached (error {r['err']:.3f})")
    net = load_pretrained("ring", device=device)
    sample(net, n=100, steps=2, seed=0)
    for n in (4000, scale.big_sample):
        rows[f"sample {n:,} points, 20 NFE (s)"] = (timed(device, lambda: sample(net, n=n, steps=20, seed=0))[0], "")

    def protocol(name, run, n):
        if not cpu:
            rows[name] = (timed(device, lambda: run(n))[0], "")
            return
        a = timed(device, lambda: run(scale.cpu_slice))[0]
        b = timed(device, lambda: run(2 * scale.cpu_slice))[0]
        per = max(b - a, 0.0) / scale.cpu_slice
        rows[name] = (a - per * scale.cpu_slice + per * n,
                      f"extrapolated from {scale.cpu_slice:,} and {2 * scale.cpu_slice:,}")

    grid = load_pretrained("gaussian_grid", device=device)
    protocol(f"hallucination protocol, {scale.halluc_n:,} samples (s)",
             lambda n: score_samples(grid, n=n), scale.halluc_n)
    gap = load(gap_path(0.0, "paper"), device=device)
    law = end_law(dataset_mixture("gap_circles"), gap.schedule)
    protocol(f"gap protocol, {scale.gap_n:,} samples (s)", lambda n: gap_binned(gap, law, n=n), scale.gap_n)
    return rows


def cpu_rows(scale: Scale) -> dict:
    """The CPU's column of the speed table, on one thread; a failure becomes its one row."""
    torch.set_num_threads(1)
    try:
        rows = speed_rows("cpu", scale, "cpu")
        rows["grid paper recipe, 100k steps (s)"] = grid_cpu_estimate()
        return rows
    except Exception as e:   # noqa: BLE001 - reported in the table, never lost
        return {"error": (None, f"{type(e).__name__}: {e}")}


def cpu_column(args) -> None:
    """``cpu_rows`` in a process of its own, written to a JSON file: it runs while the
    device does the rest."""
    out = Path(args.cpu_column)
    rows = cpu_rows(SMALL if args.small else FULL)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(out)               # the archive never packs half a file


def grid_cpu_estimate() -> tuple:
    from lab.data import make_dataset
    from lab.pretrained.recipes import GRID_POINTS, grid_config
    from lab.train import train

    x = make_dataset("gaussian_grid", GRID_POINTS, seed=0)
    cfg = dataclasses.replace(grid_config("paper"), device="cpu", steps=100_000, log_every=10)
    seconds = {}

    def stop(p):
        seconds[p.step] = p.seconds
        return p.step >= 30
    train(x, cfg, callback=stop)
    per = (seconds[30] - seconds[10]) / 20
    return (per * 100_000, "extrapolated from steps 10-30")


def start_cpu_column(res: Results, scale: Scale):
    path = res.work / "speed-cpu.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cpu-column", str(path)] + (
        ["--small"] if scale is SMALL else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LAB_DEVICE="cpu")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), path


def part_speed(res: Results, device: str, scale: Scale, args, cpu_proc=None) -> None:
    dev_rows = speed_rows(device, scale, "device")
    grid = res.data.get("grid", {}).get("row")
    if grid:
        dev_rows["grid paper recipe, 100k steps (s)"] = tuple(grid)
    if cpu_proc is None:           # on the CPU: measured here, after the device's column
        cpu = cpu_rows(scale)
    else:
        proc, path = cpu_proc
        try:
            proc.wait(timeout=max(5.0, args.deadline - time.perf_counter() - 30))
        except subprocess.TimeoutExpired:
            proc.kill()
        if path.is_file():
            cpu = {k: tuple(v) for k, v in json.loads(path.read_text()).items()}
        else:
            cpu = {"error": (None, (proc.stderr.read() if proc.stderr else "")[-300:] or "no result")}
    res.data["speed"] = {"device": dev_rows, "cpu": cpu}
    write_speed(res, device)


def write_speed(res: Results, device: str) -> None:
    dev_rows, cpu_rows = res.data["speed"]["device"], res.data["speed"].get("cpu", {})
    res.say(f"## Speed: {device} beside the CPU (one thread)\n")
    rows = []
    for name in dict.fromkeys([*dev_rows, *cpu_rows]):
        d, c = dev_rows.get(name, (None, "")), cpu_rows.get(name, (None, ""))
        base = name.replace(", CUDA graph", "")
        c_base = cpu_rows.get(base, (None, ""))[0] if c[0] is None else c[0]
        ratio = (c_base / d[0] if "steps/s" not in name else d[0] / c_base) if d[0] and c_base else None
        rows.append([name, fmt(d[0]), d[1], fmt(c[0]), c[1], fmt(ratio, 2) + "x" if ratio else "-"])
    res.table(["", device, "note", "CPU, 1 thread", "note", "speed-up"], rows)


# --- part: grid --------------------------------------------------------------------------------
def part_grid(res: Results, device: str, scale: Scale, args) -> None:
    """The grid model's paper recipe (100k steps, batch 10k) as far as its budget goes."""
    from lab.data import make_dataset
    from lab.pretrained.recipes import GRID_POINTS, grid_config
    from lab.train import train

    x = make_dataset("gaussian_grid", GRID_POINTS, seed=0)
    cfg = dataclasses.replace(grid_config("paper"), device=device, log_every=scale.grid_log_every)
    budget = min(scale.grid_budget_s, max(5.0, args.deadline - time.perf_counter()))
    marks = {}

    def stop(p):
        marks[p.step] = p.seconds
        return p.seconds > budget
    field, history = train(x, cfg, callback=stop)
    s = history["summary"]
    done, total = s["steps_done"], cfg.steps
    if not marks:
        raise RuntimeError(f"the grid's run made no report in {s['steps_done']} steps")
    first = min(marks)            # steps/s from the first report on: capture and warm-up apart
    rate = (done - first) / max(marks[done] - marks[first], 1e-9) if done > first else None
    seconds = s["train_s"] - s["capture_s"] if done == total else (marks[first] + (total - first) / rate if rate else None)
    note = (f"{done:,} steps, {rate:,.0f} steps/s, capture {s['capture_s']:.2f} s" if done == total else
            f"projected from {done:,} steps at {rate:,.0f} steps/s" if rate else "too few steps")
    res.data["grid"] = {"steps_done": done, "steps_per_s": rate, "summary": s, "row": [seconds, note]}
    res.say(f"## The grid model's paper recipe (100k steps, batch 10k) on {device}\n\n"
            f"{fmt(seconds)} s ({note}; target <= 60 s on an H200; {s['cuda_graph']})\n")


# --- part: gap ----------------------------------------------------------------------------------
def part_gap(res: Results, device: str, scale: Scale, args) -> None:
    """Deveney et al.'s network at w = 0 and 1 at their scale, resumed from --state-dir."""
    from ode_sde_gap import PAPER

    from lab.data import dataset_mixture, make_dataset
    from lab.hallucination import end_law
    from lab.metrics import gap_binned
    from lab.pretrained import GAP_DATASET
    from lab.pretrained.recipes import GAP_POINTS, gap_config
    from lab.train import read_state, save, train

    points = make_dataset(GAP_DATASET, GAP_POINTS if scale is FULL else 20_000, seed=0)
    states, models = res.work / "pretrain-state", res.work / "models"
    states.mkdir(exist_ok=True)
    models.mkdir(exist_ok=True)
    rows, out = [], {}
    for w in (0.0, 1.0):
        run = scale.gap_run
        cfg = dataclasses.replace(gap_config(w, "paper", run["steps"], run["batch_size"]),
                                  fp_points=run["fp_points"], device=device)
        name = f"gap-{GAP_DATASET}-paper-w{w:g}-{cfg.steps}x{cfg.batch_size}"
        state = states / f"{name}.state.pt"
        earlier = Path(args.state_dir) / state.name
        if earlier.is_file() and not state.is_file():
            shutil.copy(earlier, state)
        left = args.deadline - time.perf_counter() - 60          # keep time for the evaluation
        budget = args.gap_budget if args.gap_budget is not None else \
            min(scale.gap_budget_s, max(2.0, left / (2 if w == 0 else 1) - 30))
        resumed_from = read_state(state)["step"] if state.is_file() else 0
        t0 = time.perf_counter()
        field, history = train(points, cfg, state=state, resume=True,
                               callback=lambda p: time.perf_counter() - t0 > budget)
        s = history["summary"]
        label = "final" if s["steps_done"] == cfg.steps else f"step-{s['steps_done']:06d}"
        save(field, models / f"{name}-{label}.pt", meta={"dataset": GAP_DATASET, "fp_weight": w,
                                                        "network": "paper", "snapshot_step": s["steps_done"]})
        law = end_law(dataset_mixture(GAP_DATASET), field.schedule)
        secs, r = timed(device, lambda: gap_binned(field, law, n=scale.gap_eval_n))
        paper = PAPER[GAP_DATASET][int(w)]
        out[f"w{w:g}"] = {k: r[k] for k in ("ode_truth", "sde_truth", "ode_sde", "floor")} | {
            "steps_done": s["steps_done"], "steps": cfg.steps, "train_s": s["train_s"], "resumed_from": resumed_from,
            "cuda_graph": s["cuda_graph"], "eval_s": secs, "n": scale.gap_eval_n}
        rows.append([f"w = {w:g}", f"{s['steps_done']:,} of {cfg.steps:,} x {cfg.batch_size:,}"
                     + (f" (resumed at {resumed_from:,})" if resumed_from else ""),
                     *(f"{r[k] * 100:.2f}" for k in ("ode_truth", "sde_truth", "ode_sde", "floor")),
                     " / ".join(f"{v:.2f}" for v in paper), f"{s['train_s']:.0f} s"])
        res.data["gap"] = out
        res.save()
    res.say(f"## Deveney et al.'s network on {GAP_DATASET} at their scale, {scale.gap_eval_n:,} samples "
            "(W2^2 x 1e-2)\n")
    res.table(["", "steps reached", "ODE-truth", "SDE-truth", "ODE-SDE", "floor", "paper (ODE / SDE / gap)",
               "training so far"], rows)
    res.say("An unfinished run's state is in work/pretrain-state/: commit it to pretrain-state/; the "
            "next GPU run resumes it.\n")


# --- part: pretrain -------------------------------------------------------------------------------
def part_pretrain(res: Results, device: str, scale: Scale, args) -> None:
    """The shipped data-set models against their noise floor; those above it retrained
    longer, up the ladder, until they are not (or the budget ends)."""
    from lab.data import DATASETS, dataset_mixture
    from lab.fields import MixtureField
    from lab.metrics import truth_and_floor, w2
    from lab.pretrained import load_pretrained
    from lab.pretrained.recipes import pretrain
    from lab.solvers import sample
    from lab.train import load

    names = list(scale.datasets or [d for d in DATASETS if d != "gaussian_grid"])
    pool = ThreadPoolExecutor(max(2, min(12, (os.cpu_count() or 2) - 2)))   # POT's emd releases the GIL
    truths = {d: pool.submit(truth_and_floor, MixtureField(dataset_mixture(d), "vp"), 4000, None, None, 0)
              for d in names}

    def ratios(field, d):
        """Futures of W2 / floor for both samplers (the samples drawn here, the OT in the pool)."""
        ode = sample(field, n=4000, solver="dpm++2m", steps=20, seed=1).samples.cpu()
        sde = sample(field, n=4000, solver="ddpm", steps=1000, seed=1, keep_last=1).samples.cpu()

        def one(x):
            truth, floor = truths[d].result()
            return w2(x, truth) / floor
        return pool.submit(one, ode), pool.submit(one, sde)

    shipped = {d: ratios(load_pretrained(d, device=device), d) for d in names}
    best = {d: ("shipped", *(f.result() for f in shipped[d])) for d in names}
    res.data["pretrain"] = {"shipped": {d: best[d][1:] for d in names}, "trained": {}}
    models = res.work / "models"
    per_point = 0.0       # training seconds per (step x batch point), the slowest seen
    for rung, change in enumerate(scale.ladder):
        todo = [d for d in names if max(best[d][1:]) > args.floor_target]
        pending = {}
        work = change["steps"] * change["batch_size"]
        for d in todo:
            guess = work * per_point if per_point else 0.0       # seconds, from the trainings so far
            if time.perf_counter() + guess > args.deadline - 20:
                res.say(f"(pretrain: no time left for {d} at {change['steps']:,} x {change['batch_size']:,})")
                continue
            folder = res.work / "pretrain-runs" / f"rung{rung}"
            t0 = time.perf_counter()
            pretrain([d], steps=change["steps"], batch_size=change["batch_size"], device=device,
                     out_dir=folder, state_dir=folder / "state", report=lambda *_: None)
            per_point = max(per_point, (time.perf_counter() - t0) / work)
            field = load(folder / f"{d}.pt", device=device)
            pending[d] = (folder / f"{d}.pt", ratios(field, d))
        for d, (path, futures) in pending.items():
            r = tuple(f.result() for f in futures)
            recipe = f"{change['steps'] // 1000}k x {change['batch_size']}"
            res.data["pretrain"]["trained"].setdefault(d, []).append([recipe, *r])
            if max(r) < max(best[d][1:]):
                best[d] = (recipe, *r)
                models.mkdir(exist_ok=True)
                shutil.copy(path, models / f"{d}.pt")
        res.save()
        if not pending:
            break
    pool.shutdown(wait=False, cancel_futures=True)
    res.say(f"## The data-set models against their noise floor (W2 / floor, 4,000 samples; target <= "
            f"{args.floor_target:g})\n")
    rows = []
    for d in names:
        tried = "; ".join(f"{r}: {a:.2f} / {b:.2f}" for r, a, b in res.data["pretrain"]["trained"].get(d, []))
        rows.append([d, "%.2f / %.2f" % best_shipped(res, d), tried or "-", best[d][0],
                     "yes" if max(best[d][1:]) <= args.floor_target else "no"])
    res.table(["data set", "shipped (DPM++ 20 NFE / DDPM 1000)", "retrained (steps x batch: both)",
               "best", "at the floor"], rows)
    res.say("A retrained model that beats the shipped one is in work/models/<data set>.pt (made by "
            "`lab.pretrained.recipes.pretrain` with the recipe named); commit it to lab/pretrained/.\n")


def best_shipped(res: Results, d: str) -> tuple:
    return tuple(res.data["pretrain"]["shipped"][d])


# --- the run ---------------------------------------------------------------------------------------
def meta(device: str) -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if torch.device(device).type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gpu", help="results folder (on the device machine: $OUT)")
    ap.add_argument("--work", default=None,
                    help="where the parts write models, states and logs (default: a new folder in the "
                         "temporary directory; the archive in --out holds them)")
    ap.add_argument("--device", default=None, help="default: cuda if there is one, else stop with a message")
    ap.add_argument("--quick", action="store_true", help="a one-minute smoke run of every part")
    ap.add_argument("--part", default=",".join(PARTS), help=f"parts to run, of {', '.join(PARTS)}")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run (default: 470 at full scale, 90 small)")
    ap.add_argument("--state-dir", default=str(ROOT / "pretrain-state"),
                    help="where earlier runs' states are resumed from (default: pretrain-state/)")
    ap.add_argument("--gap-budget", type=float, default=None,
                    help="seconds of training per gap model (default: what the run's budget leaves, "
                         "at most 75 s); e.g. --part gap --gap-budget 200 to push those runs on")
    ap.add_argument("--floor-target", type=float, default=FLOOR_TARGET,
                    help=f"W2 / floor a data-set model must reach (default {FLOOR_TARGET})")
    ap.add_argument("--cpu-column", default=None, help=argparse.SUPPRESS)   # the CPU's speed column
    ap.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cpu_column:
        cpu_column(args)
        return 0
    parts = [p for p in args.part.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose among {', '.join(PARTS)}")
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        ap.error("no CUDA device here: give --device cpu for the small-scale run")
    from lab.train import resolve_device
    try:
        resolve_device(device)
    except ValueError as e:
        ap.error(str(e))
    if importlib.util.find_spec("ot") is None:   # the W2s of the pretrain and gap parts
        ap.error("POT (import ot) is missing: carry its wheel (docs/gpu.md)")
    scale = SMALL if args.quick or torch.device(device).type == "cpu" else FULL
    start = time.perf_counter()
    args.deadline = start + (args.budget or (470.0 if scale is FULL else 90.0))
    if torch.device(device).type != "cpu":   # leave cores to the CPU column's process and the W2s
        torch.set_num_threads(max(1, min(8, (os.cpu_count() or 2) // 2)))
    os.environ.setdefault("LAB_DEVICE", device)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="score-lab-gpu-"))
    res = Results(Path(args.out), work, meta(device) | {"scale": "full" if scale is FULL else "small",
                                                  "parts": parts})
    res.say(f"# GPU run: {res.data['meta']}\n")
    res.save()
    # the CPU's column runs beside the device's work; on the CPU itself it would only compete
    cpu_proc = start_cpu_column(res, scale) if "speed" in parts and torch.device(device).type != "cpu" else None
    # speed last but one: its CPU column runs beside the others; grid first gives it its row
    order = [p for p in ("tests", "grid", "gap", "speed", "pretrain") if p in parts]
    for part in order:
        t0 = time.perf_counter()
        res.say(f"<!-- part {part}, from {t0 - start:.0f} s -->")
        try:
            fn = {"tests": part_tests, "grid": part_grid, "gap": part_gap, "speed": part_speed,
                  "pretrain": part_pretrain}[part]
            fn(res, device, scale, args, cpu_proc) if part == "speed" else fn(res, device, scale, args)
        except Exception as e:   # noqa: BLE001 - one part's failure must not lose the others
            import traceback
            res.data.setdefault("errors", {})[part] = traceback.format_exc()
            res.say(f"## {part}: failed\n\n```\n{type(e).__name__}: {e}\n```\n")
        res.data.setdefault("part_seconds", {})[part] = round(time.perf_counter() - t0, 1)
        try:
            res.save()
        except OSError as e:   # a full disk must not stop the parts that follow
            print(f"could not save the results after {part}: {e}", file=sys.stderr)
    if cpu_proc is not None and cpu_proc[0].poll() is None:
        cpu_proc[0].kill()
    res.say(f"parts took {res.data['part_seconds']} s")
    res.save()
    if not args.work:                 # all of it is in the archive
        shutil.rmtree(work, ignore_errors=True)
    return 1 if res.data.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
