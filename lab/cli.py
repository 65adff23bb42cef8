"""Command line: ``python -m lab train | sample | info | pretrain | serve | cluster``.

    python -m lab train --dataset gaussian_grid --steps 2000 --out runs/model.pt
    python -m lab sample runs/model.pt --solver dpm++2m --steps 20 --out samples.csv
    python -m lab sample exact:two_moons --solver ddpm --steps 100
    python -m lab info runs/model.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

__all__ = ["main", "serve_command"]

DEFAULT_DATASET = "gaussian_grid"
# the largest websocket message the served lab accepts: a CSV upload just over
# lab.data.MAX_CSV_BYTES (64 MiB), base64-encoded (x 4/3), still arrives to be refused
WEBSOCKET_MAX_BYTES = 96 << 20


def _train(args) -> int:
    import lab
    from lab.data import DATASETS, load_points, make_dataset, standardize
    from lab.train import TrainConfig, progress_bar, save, train

    if args.data:
        x, source = load_points(args.data), os.path.basename(args.data)
        if not args.raw:
            x = standardize(x)
            print("centred and scaled your points to unit variance (--raw keeps them as they are)")
    else:
        if args.dataset not in DATASETS:
            raise ValueError(f"unknown data set {args.dataset!r}; choose one of {', '.join(DATASETS)}")
        x, source = make_dataset(args.dataset, args.n, seed=args.seed), args.dataset
    cfg = TrainConfig(schedule=args.schedule, model=args.model, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      device=args.device)
    out = args.out or os.path.join("runs", f"{source.rsplit('.', 1)[0]}-{cfg.schedule}-{cfg.model}.pt")
    device = cfg.device or lab.pick_device()
    print(f"training a {cfg.model} on {source} ({x.shape[0]:,} points), schedule {cfg.schedule}, "
          f"{cfg.steps} steps on {device}", flush=True)
    with progress_bar(cfg.steps, disable=args.quiet) as report:
        field, history = train(x, cfg, callback=report)
    summary = history["summary"]
    if summary["stopped"]:
        print(f"note: {summary['stopped']}")
    if summary["steps_done"] == 0:
        print("error: no training step finished; nothing saved", file=sys.stderr)
        return 1
    save(field, out, meta={"dataset": source})
    loss = summary["final_loss"]
    print(f"final loss {loss:.4f} after {summary['steps_done']} steps, {summary['train_s']:.1f} s"
          if loss is not None else f"{summary['steps_done']} steps, {summary['train_s']:.1f} s")
    print(f"saved the model to {os.path.abspath(out)}")
    return 0


def _info(args) -> int:
    from lab.train import load

    field = load(args.checkpoint, device="cpu")
    n_params = sum(p.numel() for p in field.model.parameters())
    info = {
        "model": type(field.model).__name__, "parameters": n_params,
        "schedule": field.schedule.name, "data_std": round(field.data_std, 6),
        "meta": field.meta,
        "config": dataclasses.asdict(field.config) if field.config else None,
        "summary": field.summary,
    }
    print(json.dumps(info, indent=2))
    return 0


def open_field(spec: str, schedule: str = "vp", device=None):
    """A field from a checkpoint path, or ``exact:DATASET`` for a data set's exact score."""
    from lab.data import dataset_mixture
    from lab.fields import MixtureField
    from lab.train import load

    if spec.startswith("exact:"):
        return MixtureField(dataset_mixture(spec[len("exact:"):]), schedule)
    return load(spec, device=device)


def _sample(args) -> int:
    import numpy as np

    from lab.solvers import sample

    field = open_field(args.model, args.schedule, args.device)
    traj = sample(field, n=args.n, solver=args.solver, steps=args.steps, spacing=args.spacing,
                  eta=args.eta, seed=args.seed)
    out = args.out
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    np.savetxt(out, traj.samples.detach().cpu().double().numpy(), delimiter=",", header="x,y",
               comments="", fmt="%.7g")
    print(f"{args.n} samples from {args.model} with {args.solver} ({traj.nfe} NFE, "
          f"{args.steps} steps, {args.spacing} spacing, eta={traj.eta:g})")
    print(f"saved the samples to {os.path.abspath(out)}")
    return 0


def _pretrain(args) -> int:
    from lab.pretrained.recipes import pretrain, pretrain_gap

    if args.flows:
        from lab.pretrained.recipes import pretrain_flows
        pretrain_flows(out_dir=args.out_dir)
        return 0
    if args.gap:
        from lab.pretrained import GAP_NETWORKS
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        pretrain_gap(out_dir=args.out_dir, weights=weights, networks=args.network or GAP_NETWORKS,
                     dataset=args.datasets[0] if args.datasets else None, steps=args.steps,
                     batch_size=args.batch_size, resume=args.resume, state_dir=args.state_dir)
        return 0
    pretrain(args.datasets or None, steps=args.steps, out_dir=args.out_dir, resume=args.resume,
             state_dir=args.state_dir, recipe=args.recipe, batch_size=args.batch_size, device=args.device)
    if not args.datasets:
        pretrain_gap(out_dir=args.out_dir, resume=args.resume, state_dir=args.state_dir)
        from lab.pretrained.recipes import pretrain_flows
        pretrain_flows(out_dir=args.out_dir)
    return 0


def serve_command(port: int = 5006, address: str = "127.0.0.1", num_procs: int = 1,
                  panel_args=()) -> list[str]:
    """The ``panel serve`` command line that ``python -m lab serve`` becomes (benchmarks run
    the same server under a profiler with it)."""
    import glob

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")
    apps = sorted(glob.glob(os.path.join(folder, "*.py")))
    if not apps:
        raise ValueError("no apps/*.py found beside the lab package (serve from a checkout)")
    return [sys.executable, "-m", "panel", "serve", *apps, "--port", str(port),
            "--address", address, "--num-procs", str(num_procs),
            "--index", os.path.join(folder, "index.html"),
            # each process warms up before its first page (lab.app.warmup.warm_up)
            "--setup", os.path.join(os.path.dirname(os.path.abspath(__file__)), "app", "serve_setup.py"),
            "--allow-websocket-origin", f"{address}:{port}",
            "--allow-websocket-origin", f"localhost:{port}",
            # an uploaded file travels in one websocket message (base64): Bokeh's 20 MiB default
            # would drop the page's connection before a 64 MiB CSV could be refused with a message
            "--websocket-max-message-size", str(WEBSOCKET_MAX_BYTES), *panel_args]


def _serve(args) -> int:
    cmd = serve_command(args.port, args.address, args.num_procs, args.panel_args)
    if args.dask:
        from lab.app.cluster import ENV, connect
        connect(args.dask).close()       # reachable? else an error naming the address, before serving
        os.environ[ENV] = args.dask
    if args.no_prefill:
        os.environ["LAB_PREFILL"] = "off"
    if args.no_cache:
        os.environ["LAB_CACHE"] = "off"
    elif args.cache_dir:
        os.environ["LAB_CACHE_DIR"] = os.path.abspath(args.cache_dir)
    print(f"serving the lab: open http://{args.address}:{args.port}/all in a browser "
          f"(every page as a tab; http://{args.address}:{args.port}/ is the lab's index)", flush=True)
    os.execv(sys.executable, cmd)  # become the server: a signal to this process reaches it


def _cluster(args) -> int:
    """A LocalCluster of worker processes (one torch thread each) until interrupted."""
    import time

    from distributed import LocalCluster

    for name, value, low in (("--workers", args.workers, 1), ("--threads", args.threads, 1)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))      # the workers inherit it
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                           scheduler_port=args.port, processes=True, dashboard_address=None,
                           resources={"GPU": 1} if args.gpu else None)
    print(f"a Dask cluster of {args.workers} workers x {args.threads} threads at {cluster.scheduler_address}: "
          f"serve the lab on it with `python -m lab serve --dask {cluster.scheduler_address}` (Ctrl-C stops it)",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lab.schedules import SCHEDULES
    from lab.train import TrainConfig

    p = argparse.ArgumentParser(prog="python -m lab", description="score-lab: 2-D diffusion models")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a score model and save a checkpoint")
    t.add_argument("--dataset", default=DEFAULT_DATASET, help="built-in data set name")
    t.add_argument("--data", help="a CSV file of points (x, y) instead of a built-in data set")
    t.add_argument("--raw", action="store_true", help="train on --data points without standardising")
    t.add_argument("--n", type=int, default=20_000, help="points drawn from the data set")
    t.add_argument("--schedule", default="vp", choices=list(SCHEDULES))
    t.add_argument("--model", default="score_mlp", choices=["score_mlp", "potential_mlp"])
    t.add_argument("--steps", type=int, default=TrainConfig.steps)
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--lr", type=float, default=TrainConfig.lr)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    t.add_argument("--out", help="checkpoint path (default: runs/DATASET-SCHEDULE-MODEL.pt)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    from lab.solvers import SOLVERS, SPACINGS

    sm = sub.add_parser("sample", help="sample a model (or exact:DATASET) with any solver, to CSV")
    sm.add_argument("model", help="a checkpoint file, or exact:DATASET for the exact score")
    sm.add_argument("--solver", default="dpm++2m", choices=list(SOLVERS))
    sm.add_argument("--steps", type=int, default=20)
    sm.add_argument("--spacing", default="logsnr", choices=list(SPACINGS))
    sm.add_argument("--eta", type=float, default=None, help="ODE (0) to SDE (1); default: the solver's")
    sm.add_argument("--n", type=int, default=4000)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--schedule", default="vp", choices=list(SCHEDULES),
                    help="schedule of an exact:DATASET field (a checkpoint has its own)")
    sm.add_argument("--device", default=None)
    sm.add_argument("--out", default="samples.csv")
    sm.set_defaults(func=_sample)

    pt = sub.add_parser("pretrain", help="rebuild the pretrained checkpoints in lab/pretrained/")
    pt.add_argument("datasets", nargs="*", help="data sets (default: all)")
    pt.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig's)")
    pt.add_argument("--out-dir", default=None, help="folder (default: lab/pretrained)")
    pt.add_argument("--resume", action="store_true",
                    help="continue each run from its saved state (written every few minutes)")
    pt.add_argument("--state-dir", default=None, help="resumable states and snapshots (default: runs/pretrain)")
    pt.add_argument("--recipe", default=None, choices=["paper", "fast"],
                    help="the grid model's training recipe (default: the shipped one; see lab.pretrained.recipes)")
    pt.add_argument("--gap", action="store_true",
                    help="only the ODE-SDE gap models (lab.pretrained.recipes.pretrain_gap); a data set given "
                         "is theirs (default: gap_circles)")
    pt.add_argument("--flows", action="store_true",
                    help="only the flows page's shipped flows (lab.pretrained.recipes.pretrain_flows)")
    pt.add_argument("--network", action="append", choices=["paper", "lab"],
                    help="with --gap: the network(s) to train (default: both)")
    pt.add_argument("--weights", default=None, help="with --gap: Fokker-Planck weights, e.g. 0,1 (default: all)")
    pt.add_argument("--batch-size", type=int, default=None,
                    help="batch size (default: TrainConfig's; with --gap: GAP_SCALE's)")
    pt.add_argument("--device", default=None,
                    help="where the data sets' models train (default: cpu; the grid's and the gap "
                         "models' runs: the lab's device)")
    pt.set_defaults(func=_pretrain)

    sv = sub.add_parser("serve", help="serve the dashboards (panel serve apps/*.py); further "
                                      "options go to panel serve")
    sv.add_argument("--port", type=int, default=5006)
    sv.add_argument("--address", default="127.0.0.1")
    sv.add_argument("--num-procs", type=int, default=1, help="server processes (forked)")
    sv.add_argument("--cache-dir", default=None,
                    help="the result cache shared by the server's processes (default: $LAB_CACHE_DIR, "
                         "else ~/.cache/score-lab/results)")
    sv.add_argument("--no-cache", action="store_true", help="keep results in each process's memory only")
    sv.add_argument("--dask", default=None, metavar="ADDRESS",
                    help="compute the pages' work on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786; "
                         "default: $LAB_DASK, else in the server's processes); `lab cluster` starts one")
    sv.add_argument("--no-prefill", action="store_true",
                    help="start serving at once, without computing every page's defaults first (a first "
                         "visit to the hallucination page then waits ~40 s on a CPU)")
    sv.set_defaults(func=_serve, panel_args=[])

    cl = sub.add_parser("cluster", help="start a local Dask scheduler and workers for `lab serve --dask`")
    cl.add_argument("--workers", type=int, default=2, help="worker processes")
    cl.add_argument("--threads", type=int, default=1, help="threads per worker")
    cl.add_argument("--port", type=int, default=8786, help="the scheduler's port")
    cl.add_argument("--gpu", action="store_true", help="label the workers with the resource GPU=1")
    cl.set_defaults(func=_cluster)

    i = sub.add_parser("info", help="print a checkpoint's config and training summary")
    i.add_argument("checkpoint")
    i.set_defaults(func=_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "serve":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.panel_args = extra   # serve: further options go to panel serve (e.g. --num-threads 4)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
