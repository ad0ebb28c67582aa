"""Helpers for the integration tests: write an MLIR function, run it with
moe-run on NumPy inputs, read the results back.

The path of moe-run comes from the MOE_RUN environment variable (set by the
lit test that starts pytest)."""

import os
import subprocess
import tempfile

import numpy as np

MOE_RUN = os.environ.get("MOE_RUN", "moe-run")
MOE_COMPILE = os.environ.get("MOE_COMPILE", "moe-compile")


def host_has_avx512_bf16():
    """Whether this CPU has AVX512-BF16 (where moe-run and moe-compile use
    bf16 dot products for bf16 weights by default, --bf16-dot=auto)."""
    try:
        with open("/proc/cpuinfo") as stream:
            return any(line.startswith("flags") and " avx512_bf16" in line
                       for line in stream)
    except OSError:
        return False


HOST_BF16 = host_has_avx512_bf16()


def tensor_type(shape, dtype):
    dims = "x".join("?" if d is None else str(d) for d in shape)
    return f"tensor<{dims}x{dtype}>" if dims else f"tensor<{dtype}>"


class Function:
    """A func.func with named arguments and results (moe.name attributes)."""

    def __init__(self, name="f"):
        self.name = name
        self.args = []  # (name, type)
        self.body = []
        self.results = []  # (name, ssa, type)

    def arg(self, name, shape, dtype="f32"):
        t = tensor_type(shape, dtype)
        self.args.append((name, t))
        return f"%{name}", t

    def op(self, text):
        self.body.append(text)

    def result(self, name, ssa, type_):
        self.results.append((name, ssa, type_))

    def text(self):
        args = ", ".join(f'%{n}: {t} {{moe.name = "{n}"}}' for n, t in self.args)
        res = ", ".join(f'{t} {{moe.name = "{n}"}}' for n, _, t in self.results)
        ret_vals = ", ".join(s for _, s, _ in self.results)
        ret_types = ", ".join(t for _, _, t in self.results)
        lines = [f"func.func @{self.name}({args}) -> ({res}) {{"]
        lines += ["  " + b for b in self.body]
        lines.append(f"  return {ret_vals} : {ret_types}")
        lines.append("}")
        return "\n".join(lines) + "\n"


def run(fn, inputs, extra_args=(), aot=False, bf16_dot=None):
    """Runs `fn` with moe-run (JIT, or compiled ahead of time by moe-compile
    when `aot`); returns {result name: array}. `bf16_dot` ("auto", "on",
    "off"; None: the tools' default, auto) is passed as --bf16-dot to the
    tool that compiles."""
    dot = [f"--bf16-dot={bf16_dot}"] if bf16_dot else []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.mlir")
        with open(model, "w") as f:
            f.write(fn.text())
        if aot:
            library = os.path.join(tmp, "model.so")
            proc = subprocess.run([MOE_COMPILE, model, "-o", library, *dot],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise AssertionError(f"moe-compile failed:\n{proc.stderr}\n{fn.text()}")
            model = library
            dot = []
        cmd = [MOE_RUN, model, "--output-dir", tmp, *dot, *extra_args]
        for name, value in inputs.items():
            path = os.path.join(tmp, f"in_{name}.npy")
            np.save(path, value)
            cmd.append(f"--input={name}={path}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(
                f"moe-run failed ({proc.returncode}):\n{proc.stderr}\n{fn.text()}")
        return {n: np.load(os.path.join(tmp, f"{n}.npy")) for n, _, _ in fn.results}


def assert_close(actual, expected, rtol, what=""):
    """max|actual - expected| <= rtol * max(|expected|, tiny)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    err = np.abs(actual - expected).max(initial=0.0)
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} * {scale:.3e}"


def attr_dict(attrs):
    """An MLIR attribute dictionary from Python values."""
    parts = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(key)
        elif isinstance(value, float):
            parts.append(f"{key} = {value:.9e} : f32")
        elif isinstance(value, int):
            parts.append(f"{key} = {value}")
        else:
            parts.append(f"{key} = {value}")
    return "{" + ", ".join(parts) + "}" if parts else ""
