#!/usr/bin/env python3
"""Benchmark (not a test): expert-parallel scaling of a Mixtral-shaped MoE
layer (bench/moe_layer.py's shape: H=1024, I=2816, E=8, k=2, SwiGLU) over
N = 1, 2, 4 ranks on this machine. The layer is compiled once per N
(moe-compile --ep N), its weights written once to a safetensors file (each
rank binds only its experts), and run by moe-run as N ranks:

  - local: N threads of one process (--backend local);
  - mpi:   N processes under mpirun (--backend mpi), when built.

Each rank gets max(1, threads / N) pool threads, so the ranks share the
machine's cores. Reported: rank 0's median time per step over --repeat
runs, medians over --rounds interleaved rounds, and the speed-up over N = 1.
Outputs are checked to be bitwise equal to N = 1 (a benchmark that computes
something else measures nothing).

    /usr/bin/python3 bench/ep_scaling.py [--build build] [--tokens 16,512]
        [--ranks 1,2,4] [--backends local,mpi] [--threads 2] [--repeat 5]
        [--rounds 3]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gen_hf_checkpoint  # noqa: E402
from moe_layer import E, H, I, layer  # noqa: E402

MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--mca", "btl",
          "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]


def write_weights(path, wdtype):
    g = np.random.default_rng(0)
    arrays = {
        "gate": (g.standard_normal((E, H)) * 0.05).astype(np.float32),
        "w1": (g.standard_normal((E, I, H)) * 0.02).astype(np.float32),
        "w2": (g.standard_normal((E, H, I)) * 0.02).astype(np.float32),
        "w3": (g.standard_normal((E, I, H)) * 0.02).astype(np.float32),
    }
    tag = "F32" if wdtype == "f32" else "BF16"
    entries = [(n, tag, a.shape, gen_hf_checkpoint.encode(a, tag))
               for n, a in arrays.items()]
    gen_hf_checkpoint.write_safetensors(path, entries)


def run_layer(build, lib, ranks, backend, weights, x_path, out_dir, repeat,
              threads):
    per_rank = max(1, threads // ranks)
    cmd = [os.path.join(build, "bin", "moe-run"), lib, "--weights", weights,
           f"--input=x={x_path}", "--repeat", str(repeat), "--num-threads",
           str(per_rank), "--output-dir", out_dir]
    if ranks > 1:
        cmd += ["--ep", str(ranks), "--backend", backend]
        if backend == "mpi":
            cmd = MPIRUN + ["-np", str(ranks)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    m = re.search(r"median ([0-9.]+) ms", proc.stderr)
    return float(m.group(1)), np.load(os.path.join(out_dir, "out.npy"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tokens", default="16,512")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--backends", default="local,mpi")
    ap.add_argument("--weights", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    backends = args.backends.split(",")
    if "mpi" in backends and not shutil.which("mpirun"):
        backends.remove("mpi")
    ranks = [int(n) for n in args.ranks.split(",")]
    tokens = [int(t) for t in args.tokens.split(",")]
    moe_compile = os.path.join(args.build, "bin", "moe-compile")

    samples = {}  # (T, backend, N) -> [ms]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layer.mlir")
        with open(src, "w") as f:
            f.write(layer(args.weights).text())
        weights = os.path.join(tmp, "weights.safetensors")
        write_weights(weights, args.weights)
        libs = {}
        for n in ranks:
            libs[n] = os.path.join(tmp, f"layer-ep{n}.so")
            subprocess.run([moe_compile, src, "-o", libs[n]]
                           + (["--ep", str(n)] if n > 1 else []), check=True)
        for _ in range(args.rounds):
            for T in tokens:
                x = np.random.default_rng(T).standard_normal((T, H)).astype(np.float32)
                x_path = os.path.join(tmp, f"x{T}.npy")
                np.save(x_path, x)
                baseline = None
                for backend in backends:
                    for n in ranks:
                        if n == 1 and backend != backends[0]:
                            continue
                        out_dir = os.path.join(tmp, f"out-{backend}-{n}")
                        os.makedirs(out_dir, exist_ok=True)
                        ms, out = run_layer(args.build, libs[n], n, backend,
                                            weights, x_path, out_dir,
                                            args.repeat, args.threads)
                        if n == 1:
                            baseline = out
                        elif baseline is not None and not np.array_equal(out, baseline):
                            sys.exit(f"T={T} {backend} N={n}: output differs "
                                     "from N = 1")
                        key = (T, "-" if n == 1 else backend, n)
                        samples.setdefault(key, []).append(ms)
    med = statistics.median
    print(f"{args.rounds} round(s) of {args.repeat} runs, {args.threads} "
          f"threads in all, {args.weights} weights; outputs bitwise equal "
          "to N = 1")
    print()
    print("| T | backend | N | ms per step (median) | speed-up vs N = 1 |")
    print("|---|---|---|---|---|")
    for (T, backend, n), times in sorted(samples.items(),
                                         key=lambda kv: (kv[0][0], kv[0][1] != "-", kv[0][1], kv[0][2])):
        base = med(samples[(T, "-", 1)]) if (T, "-", 1) in samples else None
        speed = f"{base / med(times):.2f}x" if base else "n/a"
        print(f"| {T} | {backend} | {n} | {med(times):.2f} | {speed} |")


if __name__ == "__main__":
    main()
