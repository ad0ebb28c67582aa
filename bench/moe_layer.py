#!/usr/bin/env python3
"""Benchmark (not a test): a Mixtral-shaped MoE layer compiled by moe-compile
against the two peers a user would pick instead, same machine, same thread
count, same run: ONNX Runtime's com.microsoft.MoE CPU kernel (npm
onnxruntime-node, swiglu_fusion = 1; skipped if not installed) and PyTorch
running the HF-style expert loop (with OpenBLAS). Prints a markdown table of
medians, with each row's fraction of the machine's measured limits: f32
matmul throughput (OpenBLAS sgemm, same threads) and memory read bandwidth.

    /usr/bin/python3 bench/moe_layer.py [--build build] [--tokens 1,16,512]
        [--repeat 10] [--threads 2] [--weights f32,bf16] [--rounds 3]

Shape (issue 3): H=1024, I=2816, E=8, k=2, SwiGLU.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "Integration"))
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "reference"))
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "ort"))

from moe_harness import Function, tensor_type  # noqa: E402

H, I, E, K = 1024, 2816, 8, 2


def layer(wdtype):
    f = Function("mixtral_moe")
    xs, xt = f.arg("x", [None, H])
    gs, gt = f.arg("gate", [E, H], wdtype)
    w1, w1t = f.arg("w1", [E, I, H], wdtype)
    w2, w2t = f.arg("w2", [E, H, I], wdtype)
    w3, w3t = f.arg("w3", [E, I, H], wdtype)
    it, ft = tensor_type([None, K], "i32"), tensor_type([None, K], "f32")
    rows, ct = tensor_type([None, H], "f32"), tensor_type([E], "i32")
    f.op(f"%i, %w = moe.route {xs} weight({gs}) k = {K} scoring = softmax {{renormalize}} : ({xt}, {gt}) -> ({it}, {ft})")
    f.op(f"%r, %c, %m = moe.dispatch dropless {xs}, %i experts = {E} : ({xt}, {it}) -> ({rows}, {ct}, {it})")
    f.op(f"%y = moe.expert_ffn %r, %c fc1({w1}) fc3({w3}) fc2({w2}) act = silu gating = separate : ({rows}, {ct}, {w1t}, {w2t}, {w3t}) -> {rows}")
    f.op(f"%o = moe.combine dropless %y, %m, %w : ({rows}, {it}, {ft}) -> {xt}")
    f.result("out", "%o", xt)
    return f


def torch_hf_loop(x, gate, w1, w2, w3, repeat):
    """The seeds' HF-style MixtralSparseMoeBlock loop, f32."""
    import torch
    import torch.nn.functional as F
    x, gate, w1, w2, w3 = (torch.from_numpy(a) for a in (x, gate, w1, w2, w3))

    def step():
        logits = x @ gate.T
        p = F.softmax(logits, dim=1, dtype=torch.float)
        w, sel = torch.topk(p, K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(sel, num_classes=E).permute(2, 1, 0)
        for e in range(E):
            idx, top = torch.where(mask[e])
            if top.numel() == 0:
                continue
            cur = x[top]
            h = F.silu(cur @ w1[e].T) * (cur @ w3[e].T)
            out.index_add_(0, top, (h @ w2[e].T) * w[top, idx, None])
        return out

    with torch.no_grad():
        step()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def machine_limits(threads):
    """(f32 GFLOP/s of a large OpenBLAS sgemm, GB/s of reading a large array)."""
    import torch
    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    gflops = 2 * 2048 ** 3 / min(times) / 1e9
    big = torch.ones(256 * 1024 * 1024 // 4)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        big.sum()
        times.append(time.perf_counter() - t0)
    gbs = big.numel() * 4 / min(times) / 1e9
    return gflops, gbs


def moe_mlir(build, wdtype, inputs, repeat, tmp, threads):
    src = os.path.join(tmp, f"layer_{wdtype}.mlir")
    lib = os.path.join(tmp, f"layer_{wdtype}.so")
    if not os.path.exists(lib):
        with open(src, "w") as f:
            f.write(layer(wdtype).text())
        subprocess.run([os.path.join(build, "bin", "moe-compile"), src, "-o", lib], check=True)
    cmd = [os.path.join(build, "bin", "moe-run"), lib, "--repeat", str(repeat),
           "--num-threads", str(threads)]
    for name, value in inputs.items():
        path = os.path.join(tmp, f"{name}.npy")
        np.save(path, value)
        cmd.append(f"--input={name}={path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"median ([0-9.]+) ms", proc.stderr)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tokens", default="1,16,512")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="f32,bf16")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds; medians over them")
    args = ap.parse_args()

    import torch
    import ort_moe
    peak_gflops, peak_gbs = machine_limits(args.threads)
    torch.set_num_threads(args.threads)
    have_ort = ort_moe.available()
    g = np.random.default_rng(0)
    weights = {
        "gate": (g.standard_normal((E, H)) * 0.05).astype(np.float32),
        "w1": (g.standard_normal((E, I, H)) * 0.02).astype(np.float32),
        "w2": (g.standard_normal((E, H, I)) * 0.02).astype(np.float32),
        "w3": (g.standard_normal((E, I, H)) * 0.02).astype(np.float32),
    }
    # Each round measures every peer at every T, one after the other, so
    # that slow phases of a shared machine hit all of them; the table gives
    # the median over the rounds of each time and of each ratio.
    samples = {}   # (T, wd) -> list of (ours, ort, torch)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for T in [int(t) for t in args.tokens.split(",")]:
                x = np.random.default_rng(T).standard_normal((T, H)).astype(np.float32)
                inputs = {"x": x, **weights}
                t_torch = torch_hf_loop(x, weights["gate"], weights["w1"], weights["w2"],
                                        weights["w3"], args.repeat)
                t_ort = None
                if have_ort:
                    _, t_ort = ort_moe.run(x, weights["gate"], weights["w1"], weights["w2"],
                                           weights["w3"], K, repeat=args.repeat,
                                           threads=args.threads)
                for wd in args.weights.split(","):
                    t_ours = moe_mlir(args.build, wd, inputs, args.repeat, tmp, args.threads)
                    samples.setdefault((T, wd), []).append((t_ours, t_ort, t_torch))
    print(f"Machine limits ({args.threads} threads): f32 sgemm {peak_gflops:.0f} GFLOP/s, "
          f"memory read {peak_gbs:.1f} GB/s; {args.rounds} round(s) of {args.repeat} runs")
    print()
    print(f"| T | weights | moe-mlir ms | ONNX Runtime ms (f32) | PyTorch HF loop ms (f32) "
          f"| vs ORT | vs PyTorch | GFLOP/s (of sgemm peak) | weight GB/s (of read bw) |")
    print("|---|---|---|---|---|---|---|---|---|")
    med = statistics.median
    for (T, wd), runs in samples.items():
        ours = med(r[0] for r in runs)
        torch_ms = med(r[2] for r in runs)
        vs_torch = med(r[2] / r[0] for r in runs)
        if have_ort:
            ort_text = f"{med(r[1] for r in runs):.2f}"
            vs_ort = f"{med(r[1] / r[0] for r in runs):.2f}x"
        else:
            ort_text = vs_ort = "n/a"
        flops = 2.0 * T * K * 3 * H * I
        # Weights read: every expert that receives a token (at most
        # min(E, T*K)) reads its three matrices once.
        wbytes = min(E, T * K) * 3 * H * I * (4 if wd == "f32" else 2)
        gf, gbs = flops / ours / 1e6, wbytes / ours / 1e6
        print(f"| {T} | {wd} | {ours:.2f} | {ort_text} | {torch_ms:.2f} | {vs_ort} "
              f"| {vs_torch:.2f}x | {gf:.0f} ({100 * gf / peak_gflops:.0f}%) "
              f"| {gbs:.1f} ({100 * gbs / peak_gbs:.0f}%) |")


if __name__ == "__main__":
    main()
