"""Side-by-side benchmark of Bastion's white-box evasion attacks against torchattacks and ART.

One process, one demo CNN and the same MNIST test images for every tool. Prints a table with
ratios (anchor time / Bastion time; Bastion time / the floor of raw forward+backward passes)
and the verdict on each target, and writes everything to bench/results/<machine>-<date>.json.

    .venv/bin/python bench/bench_evasion.py --quick            # a smoke run: 100 images, two batch sizes
    .venv/bin/python bench/bench_evasion.py                    # the full run (see docs/BENCHMARKS.md)
    .venv/bin/python bench/bench_evasion.py --only pgd-linf --device cuda   # the floor runs inside pgd-linf
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bastion.data import load_demo
from bastion.demo import demo_model
from harness import machine, result_path, write_json
from robust import ROW as ROBUST_ROW
from robust import RobustRow
from rows import ROWS, TOOLS, Context, Row
from summary import table, verdicts

ALL_ROWS: tuple[Row | RobustRow, ...] = (*ROWS, ROBUST_ROW)
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Options:
    device: str
    n: int
    batch_sizes: tuple[int, ...]
    only: tuple[str, ...]
    tools: tuple[str, ...]
    threads: int | None
    repeats: int
    ensemble_n: int
    cw_steps: int
    cw_search_steps: int
    cw_n: int
    cw_art_examples: int
    out: Path | None


def parse(argv: list[str] | None = None) -> Options:
    names = [r.name for r in ALL_ROWS]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--n", type=int, default=1000, help="MNIST test images (at most 1000)")
    p.add_argument("--batch-sizes", default="32,128,512,1000", help="tried on PGD-40 Linf (with the floor) and FGSM")
    p.add_argument("--only", nargs="+", choices=names, metavar="ROW", help=f"rows to run: {', '.join(names)}")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="tools to run")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=1, help="keep the fastest of N runs on the batch-size sweeps")
    p.add_argument("--ensemble-n", type=int, default=250, help="images for the ensemble and robust-accuracy rows")
    p.add_argument("--cw-steps", type=int, default=300, help="C&W optimisation steps per binary-search step")
    p.add_argument("--cw-search-steps", type=int, default=5, help="C&W binary-search steps")
    p.add_argument("--cw-n", type=int, default=200, help="images for the C&W row")
    p.add_argument("--cw-art-examples", type=int, default=20, help="ART's C&W runs on the first N images only")
    p.add_argument("--quick", action="store_true", help="smoke run: n=100, batch sizes 32 and 100, short C&W")
    p.add_argument("--out", type=Path, help="JSON path (default: bench/results/<machine>-<date>.json)")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.batch_sizes, a.cw_steps, a.cw_search_steps, a.cw_art_examples = 100, "32,100", 20, 3, 10
        a.ensemble_n = min(a.ensemble_n, 50)
    if not 1 <= a.n <= 1000:
        p.error(f"expected 1 <= --n <= 1000, got {a.n}")
    sizes = tuple(int(s) for s in a.batch_sizes.split(","))
    if not sizes or min(sizes) < 1:
        p.error(f"expected positive batch sizes, got {a.batch_sizes!r}")
    return Options(
        a.device, a.n, sizes, tuple(a.only or names), tuple(a.tools), a.threads, a.repeats, a.ensemble_n,
        a.cw_steps, a.cw_search_steps, a.cw_n, a.cw_art_examples, a.out,
    )  # fmt: skip


def context(opts: Options) -> Context:
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was asked for, but torch sees no CUDA device")
    model = demo_model("mnist", device=device)
    data = load_demo("mnist", "test")
    x, y = data.x[: opts.n].to(device), data.y[: opts.n].to(device)
    return Context(
        model, x, y, opts.tools, opts.batch_sizes, opts.repeats, opts.cw_steps, opts.cw_search_steps,
        opts.cw_n, opts.cw_art_examples, opts.ensemble_n,
    )  # fmt: skip


def warm_up(ctx: Context) -> None:
    """One untimed pass so that lazy initialisation (kernels, allocator, thread pool) is not charged to a row."""
    xb = ctx.x[: min(ctx.n, 128)].detach().requires_grad_(True)
    torch.autograd.grad(ctx.module(xb).sum(), xb)
    if ctx.x.device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    opts = parse(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    ctx = context(opts)
    info = machine(ctx.model.device)
    print(f"{info['date_utc']}  {info['cpu_model']}  nproc={info['nproc']}  threads={info['torch_threads']}  "
          f"device={info['device']}  load={info['load_average']}")  # fmt: skip
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"bastion source: {info['bastion_source']}")
    warm_up(ctx)
    started = time.perf_counter()
    for row in ALL_ROWS:
        if row.name in opts.only:
            print(f"[{row.name}]", flush=True)
            row.run(ctx)
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    info["load_average_end"] = os.getloadavg()
    passes = {r.name: r.passes for r in ALL_ROWS}
    print("\n" + table(ctx.done, passes) + "\n")
    found = verdicts(ctx.done, ctx.scores, ctx.model.device.type)
    print("targets:\n" + "\n".join(v.line() for v in found))
    path = opts.out or result_path(RESULTS, ctx.model.device)
    args = {**vars(opts), "out": str(path), "verdicts": [v.__dict__ for v in found]}
    write_json(path, info, ctx.done, args)
    print(f"\ntotal {info['total_seconds']} s; results in {path}")


if __name__ == "__main__":
    main()
