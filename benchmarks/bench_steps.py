"""Per-step timings: bpcore's fused training step against its BLAS floor, PyTorch and NumPy.

Runs ``python -m bpcore.bench`` with its defaults (MLP 784-256-128-10 float32, batches
1, 8, 32, 128, 512, 2048, threads 1 and all) and writes the raw numbers to
benchmarks/results/steps.json. Extra arguments go to bpcore.bench and win over these, e.g.

    python benchmarks/bench_steps.py
    python benchmarks/bench_steps.py --threads 1,2 --json /tmp/steps.json
"""
import os
import sys

from bpcore import bench

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "steps.json")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # later options win in argparse, so the caller's --json replaces this default
    return bench.main(["--json", RESULTS] + argv)


if __name__ == "__main__":
    main()
