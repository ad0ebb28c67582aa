"""Runs any .onnx file in ONNX Runtime (npm onnxruntime-node, CPU provider)
from Python and returns every graph output by name as a NumPy array of the
dtype ORT produced.

    from ort_runner import run, run_many, OrtError
    outs = run("model.onnx", {"x": x, "ids": ids}, threads=1)
    outs, ms = run("model.onnx", feeds, repeat=20, timed=True)   # median ms

Inputs may be f32, f64, f16, i8, u8, i16, u16, i32, u32, i64, u64 or bool
arrays. Each call starts one `node` process (about 0.1 s); `run_many` runs a
list of models in a single process. A model ORT refuses (at session creation
or at run time) raises OrtError carrying ORT's message and the stage.

Without onnxruntime-node, `require_ort()` calls pytest.skip with the reason
(use it at the top of tests); `run` raises OrtUnavailable.

The onnxruntime-node package is looked up in $MOE_MLIR_ORT_DIR, else
<repo>/third_party/ort/node_modules/onnxruntime-node; `node` in $MOE_MLIR_NODE,
else on PATH."""

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
ORT_DIR = os.environ.get(
    "MOE_MLIR_ORT_DIR",
    os.path.join(ROOT, "third_party", "ort", "node_modules", "onnxruntime-node"))
RUNNER = os.path.join(HERE, "run_onnx.js")

_NP_TO_ORT = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
    np.dtype(np.float16): "float16",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "bool",
}
_ORT_TO_NP = {v: k for k, v in _NP_TO_ORT.items()}


class OrtUnavailable(RuntimeError):
    pass


class OrtError(RuntimeError):
    """ORT rejected a model: `stage` is 'create' (session creation: graph,
    schema or kernel constructor checks) or 'run' (Compute-time checks)."""

    def __init__(self, stage, message):
        super().__init__(f"ONNX Runtime {stage} error: {message}")
        self.stage = stage
        self.message = message


def _node():
    return os.environ.get("MOE_MLIR_NODE") or shutil.which("node")


def unavailable_reason():
    """None when ORT can be run, else why not."""
    if not os.path.isfile(os.path.join(ORT_DIR, "package.json")):
        return (f"onnxruntime-node is not installed at {ORT_DIR} "
                "(scripts/setup.sh --with-onnxruntime, or set MOE_MLIR_ORT_DIR)")
    if _node() is None:
        return "node (Node.js) is not on PATH; onnxruntime-node needs it"
    return None


def available():
    return unavailable_reason() is None


def require_ort(allow_module_level=False):
    """pytest.skip (loudly, with the reason) when ORT cannot be run."""
    reason = unavailable_reason()
    if reason is not None:
        import pytest
        pytest.skip(f"ONNX Runtime unavailable: {reason}",
                    allow_module_level=allow_module_level)


def _write_inputs(tmp, idx, feeds):
    specs = []
    for j, (name, value) in enumerate(feeds.items()):
        arr = np.array(value, order="C")  # keeps 0-d inputs 0-d (ascontiguousarray would not)
        if arr.dtype not in _NP_TO_ORT:
            raise TypeError(f"input '{name}': unsupported dtype {arr.dtype}")
        path = os.path.join(tmp, f"job{idx}_in{j}.bin")
        arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(path)
        specs.append({"name": name, "dtype": _NP_TO_ORT[arr.dtype],
                      "shape": [int(d) for d in arr.shape], "file": path})
    return specs


def run_many(jobs, threads=1, repeat=0, env=None):
    """jobs: list of (model_path, {name: array}). Returns a list with, per
    job, either ({output name: array}, median_ms or None) or an OrtError."""
    reason = unavailable_reason()
    if reason is not None:
        raise OrtUnavailable(reason)
    with tempfile.TemporaryDirectory(prefix="ort_runner_") as tmp:
        manifest = {"jobs": []}
        for i, (model, feeds) in enumerate(jobs):
            out_dir = os.path.join(tmp, f"job{i}")
            os.makedirs(out_dir)
            manifest["jobs"].append({
                "model": os.path.abspath(model), "threads": int(threads),
                "repeat": int(repeat), "out_dir": out_dir,
                "inputs": _write_inputs(tmp, i, feeds)})
        mpath = os.path.join(tmp, "manifest.json")
        with open(mpath, "w") as f:
            json.dump(manifest, f)
        penv = dict(os.environ, MOE_MLIR_ORT_DIR=ORT_DIR)
        if env:
            penv.update(env)
        proc = subprocess.run([_node(), RUNNER, mpath], capture_output=True, text=True,
                              env=penv)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or len(lines) != len(jobs):
            raise RuntimeError(f"run_onnx.js failed (exit {proc.returncode}):\n"
                               f"{proc.stderr}\n{proc.stdout}")
        results = []
        for line in lines:
            res = json.loads(line)
            if not res["ok"]:
                results.append(OrtError(res["stage"], res["error"]))
                continue
            outs = {}
            for o in res["outputs"]:
                dt = _ORT_TO_NP.get(o["dtype"])
                if dt is None:
                    raise TypeError(f"output '{o['name']}': unsupported dtype {o['dtype']}")
                data = np.fromfile(o["file"], dtype=dt.newbyteorder("<")).astype(dt)
                outs[o["name"]] = data.reshape(o["shape"])
            results.append((outs, res["median_ms"]))
        return results


def run(model, feeds, threads=1, repeat=0, timed=False, env=None):
    """Runs one model; returns {output name: array} (and the median time in
    ms over `repeat` timed runs after one warm-up when `timed`)."""
    (res,) = run_many([(model, feeds)], threads=threads, repeat=repeat, env=env)
    if isinstance(res, OrtError):
        raise res
    outs, ms = res
    return (outs, ms) if timed else outs
