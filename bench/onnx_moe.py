#!/usr/bin/env python3
"""Benchmark (not a test): one ONNX file holding a Mixtral-shaped MoE layer
(router MatMul -> com.microsoft.MoE, SwiGLU with swiglu_fusion = 1, weights
as initializers in an external data file), run by ONNX Runtime's CPU
provider (npm onnxruntime-node) and compiled from the same file by
moe-compile, then run by moe-run, same machine, same thread count, same run.
Prints a markdown table of medians and the speed ratio, and checks that the
two outputs agree.

    /usr/bin/python3 bench/onnx_moe.py [--build build] [--tokens 1,16,512]
        [--repeat 10] [--threads 2]

Shape (issue 3/5): H=1024, I=2816, E=8, k=2.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORT_DIR = os.environ.get(
    "MOE_MLIR_ORT_DIR",
    os.path.join(ROOT, "third_party", "ort", "node_modules", "onnxruntime-node"))
RUN_ORT = os.path.join(ROOT, "test", "Integration", "ort", "run_ort.js")

H, I, E, K = 1024, 2816, 8, 2


def build_model(path, seed=0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = np.random.default_rng(seed)
    gate_t = (g.standard_normal((H, E)) * 0.05).astype(np.float32)
    fc1 = (g.standard_normal((E, 2 * I, H)) * 0.02).astype(np.float32)
    fc2 = (g.standard_normal((E, H, I)) * 0.02).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "gate_t"], ["logits"]),
        helper.make_node("MoE", ["x", "logits", "fc1", "", "fc2"], ["out"],
                         domain="com.microsoft", k=K, activation_type="swiglu",
                         swiglu_fusion=1, normalize_routing_weights=1),
    ]
    graph = helper.make_graph(
        nodes, "mixtral_moe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", H])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["T", H])],
        initializer=[numpy_helper.from_array(gate_t, "gate_t"),
                     numpy_helper.from_array(fc1, "fc1"),
                     numpy_helper.from_array(fc2, "fc2")])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=1024)


def run_ort(model, x, out, repeat, threads, tmp):
    xin = os.path.join(tmp, "x.bin")
    x.tofile(xin)
    env = dict(os.environ, MOE_MLIR_ORT_DIR=ORT_DIR)
    proc = subprocess.run(["node", RUN_ORT, model, out, str(repeat), str(threads),
                           f"x={xin}:{x.shape[0]}x{H}"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return np.fromfile(out, dtype=np.float32).reshape(x.shape), info["median_ms"]


def run_ours(build, lib, x, repeat, threads, tmp):
    xin = os.path.join(tmp, "x.npy")
    np.save(xin, x)
    outdir = os.path.join(tmp, "ours")
    os.makedirs(outdir, exist_ok=True)
    proc = subprocess.run([os.path.join(build, "bin", "moe-run"), lib, "--input",
                           f"x={xin}", "--output-dir", outdir, "--repeat",
                           str(repeat), "--num-threads", str(threads)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    median = float(re.search(r"median ([0-9.]+) ms", proc.stderr).group(1))
    return np.load(os.path.join(outdir, "out.npy")), median


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tokens", default="1,16,512")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(ORT_DIR, "package.json")):
        sys.exit("onnxruntime-node is not installed (scripts/setup.sh --with-onnxruntime)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "moe.onnx")
        build_model(model)
        lib = os.path.join(tmp, "moe.so")
        subprocess.run([os.path.join(args.build, "bin", "moe-compile"), model, "-o", lib],
                       check=True)
        g = np.random.default_rng(1)
        for T in [int(t) for t in args.tokens.split(",")]:
            x = g.standard_normal((T, H)).astype(np.float32)
            theirs, t_ort = run_ort(model, x, os.path.join(tmp, "ort.bin"), args.repeat,
                                    args.threads, tmp)
            ours, t_ours = run_ours(args.build, lib, x, args.repeat, args.threads, tmp)
            err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))
            rows.append((T, t_ours, t_ort, err))
    print(f"| T | moe-mlir ms | ONNX Runtime ms | speed vs ORT | max rel. diff |")
    print("|---|---|---|---|---|")
    for T, ours, theirs, err in rows:
        print(f"| {T} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
