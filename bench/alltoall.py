#!/usr/bin/env python3
"""Ragged all-to-all benchmark: moeA2AExchange (MPI backend) against raw
MPI_Alltoall + MPI_Alltoallv of the same bytes, under mpirun -np N.

Prints a markdown table of the medians and their ratio (target <= 1.1).
Usage: bench/alltoall.py [--build build] [--np 2 4] [--iters 40]
                         [--tokens 2048] [--topk 2] [--hidden 4096]
"""
import argparse
import os
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build"))
    ap.add_argument("--np", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--topk", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=4096)
    args = ap.parse_args()
    exe = os.path.join(args.build, "bin", "moe-alltoall-bench")
    if not os.path.exists(exe):
        sys.exit(f"alltoall.py: {exe} not found (build moe-alltoall-bench; "
                 "needs MPI)")
    rows = []
    for n in args.np:
        cmd = ["timeout", "600", "mpirun", "--allow-run-as-root",
               "--oversubscribe", "--mca", "btl", "self,vader",
               "-np", str(n), exe, "--iters", str(args.iters),
               "--tokens", str(args.tokens), "--topk", str(args.topk),
               "--hidden", str(args.hidden)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines()
                     if l.startswith("ranks=")), None)
        if out.returncode != 0 or line is None:
            sys.exit(f"alltoall.py: {' '.join(cmd)} failed:\n"
                     f"{out.stdout}{out.stderr}")
        kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
        rows.append(kv)
    print(f"| ranks | rows/rank | row bytes | moeA2AExchange median ms "
          f"| MPI_Alltoall+Alltoallv median ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kv in rows:
        print(f"| {kv['ranks']} | {kv['rows_per_rank']} | {kv['row_bytes']} "
              f"| {float(kv['a2a_median_ms']):.2f} "
              f"| {float(kv['mpi_median_ms']):.2f} | {float(kv['ratio']):.3f} |")


if __name__ == "__main__":
    main()
