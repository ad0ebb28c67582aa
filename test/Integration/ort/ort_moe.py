"""A Mixtral-style MoE layer as an ONNX graph for ONNX Runtime's CPU kernel:
router MatMul -> com.microsoft.MoE (k, softmax over all experts, renormalized
top-k, SwiGLU with swiglu_fusion = 1: fc1 holds gate (even rows) and up
(odd rows) interleaved, each expert matrix in nn.Linear layout [out, in]).
Runs it with onnxruntime-node through run_ort.js."""

import json
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
ORT_DIR = os.environ.get(
    "MOE_MLIR_ORT_DIR",
    os.path.join(ROOT, "third_party", "ort", "node_modules", "onnxruntime-node"))


def available():
    return os.path.isfile(os.path.join(ORT_DIR, "package.json"))


def build_model(path, H, I, E, k):
    import onnx
    from onnx import TensorProto, helper
    nodes = [
        helper.make_node("MatMul", ["x", "gate_t"], ["logits"]),
        helper.make_node("MoE", ["x", "logits", "fc1", "", "fc2"], ["out"],
                         domain="com.microsoft", k=k, activation_type="swiglu",
                         swiglu_fusion=1, normalize_routing_weights=1),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", H]),
        helper.make_tensor_value_info("gate_t", TensorProto.FLOAT, [H, E]),
        helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [E, 2 * I, H]),
        helper.make_tensor_value_info("fc2", TensorProto.FLOAT, [E, H, I]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["T", H])]
    graph = helper.make_graph(nodes, "moe", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)


def run(x, gate, w1, w2, w3, k, repeat=0, threads=1):
    """Runs the layer; returns (output, median ms)."""
    T, H = x.shape
    E, I, _ = w1.shape
    fc1 = np.empty((E, 2 * I, H), dtype=np.float32)
    fc1[:, 0::2, :] = w1  # gate rows
    fc1[:, 1::2, :] = w3  # up rows
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "moe.onnx")
        build_model(model, H, I, E, k)
        feeds = {"x": x, "gate_t": np.ascontiguousarray(gate.T), "fc1": fc1, "fc2": w2}
        args = []
        for name, value in feeds.items():
            p = os.path.join(tmp, f"{name}.bin")
            np.ascontiguousarray(value, dtype=np.float32).tofile(p)
            args.append(f"{name}={p}:" + "x".join(str(d) for d in value.shape))
        out = os.path.join(tmp, "out.bin")
        env = dict(os.environ, MOE_MLIR_ORT_DIR=ORT_DIR)
        proc = subprocess.run(["node", os.path.join(HERE, "run_ort.js"), model, out,
                               str(repeat), str(threads), *args],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return np.fromfile(out, dtype=np.float32).reshape(T, H), info["median_ms"]
