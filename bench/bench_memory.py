"""Peak memory of ``bastion assess`` on 1,000 and on 10,000 examples: it should barely grow with the data.

Each size runs ``bastion assess demo:mnist --data FILE.npz --preset quick --eps E -a ATTACK -n N -q``
as a subprocess of a small watcher process, which reports its children's peak resident set size
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the kernel's own high-water mark, not a sample). The
.npz files tile the 1,000 bundled MNIST test images with tiny seeded noise, clipped to [0, 1].

    .venv/bin/python bench/bench_memory.py                  # -a pgd (quick preset: 20 steps, early stop)
    .venv/bin/python bench/bench_memory.py --attack fgsm    # the cheapest attack
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bastion.data import load_demo
from harness import machine, result_path

TARGET_RATIO = 1.2
NOISE = 0.01  # standard deviation of the noise added to each tiled copy

# Runs in the watcher process: run the command, then print the children's peak RSS (KiB on Linux).
WATCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t,"
    " 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


@dataclass(frozen=True)
class Peak:
    examples: int
    peak_rss_mib: float
    seconds: float
    command: str


def make_npz(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` examples: the MNIST test set tiled, plus seeded Gaussian noise, clipped to [0, 1]."""
    data = load_demo("mnist", "test")
    reps = -(-n // len(data))
    x = np.tile(data.x.numpy(), (reps, 1, 1, 1))[:n]
    y = np.tile(data.y.numpy(), reps)[:n]
    rng = np.random.default_rng(seed)
    x = np.clip(x + rng.normal(0.0, NOISE, size=x.shape).astype(np.float32), 0.0, 1.0)
    np.savez(path, x=x, y=y)
    return path


def peak(bastion: Path, data: Path, n: int, out: Path, args: argparse.Namespace) -> Peak:
    cmd = [
        str(bastion), "assess", "demo:mnist", "--data", str(data), "--preset", "quick",
        "--eps", str(args.eps), "-a", args.attack, "-n", str(n), "--device", args.device,
        "--out", str(out), "-q",
    ]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", WATCHER, *cmd], capture_output=True, text=True, check=False)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        sys.exit(f"bastion assess failed (exit {report['rc']}):\n{done.stderr}")
    return Peak(n, report["maxrss_kib"] / 1024, report["seconds"], " ".join(cmd))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000", help="numbers of examples, the first is the reference")
    p.add_argument("--attack", default="pgd", help="attack given to -a (fgsm is cheapest)")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="JSON path (default: bench/results/<machine>-memory-<date>.json)")
    args = p.parse_args()
    bastion = Path(sys.executable).parent / "bastion"
    os.environ.setdefault("BASTION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "bastion-cache"))
    sizes = [int(s) for s in args.sizes.split(",")]
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            data = make_npz(Path(tmp) / f"mnist-{n}.npz", n)
            peaks.append(peak(bastion, data, n, Path(tmp) / f"report-{n}", args))
            print(f"  {n:>6} examples: peak RSS {peaks[-1].peak_rss_mib:7.1f} MiB  ({peaks[-1].seconds:.1f} s)")
    report(peaks, args)


def report(peaks: list[Peak], args: argparse.Namespace) -> None:
    import torch

    ratio = peaks[-1].peak_rss_mib / peaks[0].peak_rss_mib
    met = ratio <= TARGET_RATIO
    print(f"command: {peaks[-1].command}")
    print(
        f"[{'MET' if met else 'MISSED':^8}] peak RSS {peaks[-1].examples} / {peaks[0].examples} examples "
        f"<= {TARGET_RATIO}x: {ratio:.3f}x"
    )
    path = args.out or result_path(Path(__file__).resolve().parent / "results", torch.device(args.device), "memory")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine(torch.device(args.device)),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "peaks": [asdict(x) for x in peaks],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "met": met,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results in {path}")


if __name__ == "__main__":
    main()
