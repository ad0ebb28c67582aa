"""Decomposed MoE blocks exported by torch.onnx.export (raise_models.py),
imported by moe-mlir and run, against the PyTorch modules themselves:

  * raised models (raise_models.RAISED): `moe-import FILE.onnx` must give
    one moe.route / moe.dispatch / moe.expert_ffn / moe.combine chain per
    block and no trace of the internal node; `moe-run FILE.onnx --input
    x=x.npy --output-dir DIR` must match the module for T = 1, 7 and 33
    tokens (one export, dynamic token axis; the *_static exports for the
    one token count they were exported with). Where the export has no Einsum
    (which only raising imports), the plain-operator import must agree too:
    `moe-import --no-raise` (no moe ops) and `moe-run m.mlir --weights
    FILE.onnx`;
  * refused models (raise_models.REFUSED): no moe ops, and the plain
    operators must match the module.

Tolerance: max|ours - torch| <= 1e-5 * max|torch| (f32). The token axis is
dynamic; the weights are bound from the .onnx file at run time.

Tools: $MOE_RUN / $MOE_IMPORT, else <repo>/build/bin/moe-run, moe-import."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch builds the test models")
pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)
import raise_models as R  # noqa: E402

MOE_RUN = os.environ.get("MOE_RUN") or os.path.join(ROOT, "build", "bin", "moe-run")
MOE_IMPORT = os.environ.get("MOE_IMPORT") or os.path.join(ROOT, "build", "bin", "moe-import")
TOLERANCE = 1e-5
TIMEOUT = 300

# Max relative errors seen, printed at the end (pytest -s shows them).
ERRORS = {}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    for name in R.MODELS:
        R.export(name, str(out / (name + ".onnx")))
    yield out
    if ERRORS:
        print("\nmax |ours - torch| / max |torch|:")
        for key in sorted(ERRORS):
            print("  %-40s %.3g" % (key, ERRORS[key]))


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert proc.returncode == 0, "%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode,
                                                          proc.stderr)
    return proc


def import_model(path, out, *flags):
    run([MOE_IMPORT, str(path), "-o", str(out), *flags])
    return out.read_text()


def moe_ops(text):
    return {op: text.count("moe." + op + " ") for op in ("route", "dispatch",
                                                          "expert_ffn", "combine")}


def check_numerics(name, model, tmp_path, label, extra=()):
    """Runs `model` (a .onnx or .mlir file) on T tokens for each T of
    raise_models.token_counts and compares with the PyTorch module."""
    rng = np.random.default_rng(len(name))
    for tokens in R.token_counts(name):
        x = rng.standard_normal(R.input_shape(name, tokens)).astype(np.float32)
        ref = R.reference(name, x)
        work = tmp_path / ("%s-%d" % (label, tokens))
        work.mkdir()
        np.save(work / "x.npy", x)
        run([MOE_RUN, str(model), *extra, "--input", "x=" + str(work / "x.npy"),
             "--output-dir", str(work)])
        got = np.load(work / "y.npy")
        assert got.shape == ref.shape, (tokens, got.shape, ref.shape)
        scale = float(np.abs(ref).max())
        err = float(np.abs(got - ref).max()) / scale
        key = "%s (%s)" % (name, label)
        ERRORS[key] = max(ERRORS.get(key, 0.0), err)
        assert err <= TOLERANCE, "T=%d: max error %.3g of max|ref| %.3g" % (tokens, err, scale)


@pytest.mark.parametrize("name", list(R.RAISED))
def test_raised(name, models, tmp_path):
    path = models / (name + ".onnx")
    text = import_model(path, tmp_path / "raised.mlir")
    blocks = R.BLOCKS.get(name, 1)
    assert moe_ops(text) == {"route": blocks, "dispatch": blocks,
                             "expert_ffn": blocks, "combine": blocks}, text
    assert "moe_mlir.raised" not in text
    check_numerics(name, path, tmp_path, "raised")
    if R.uses_einsum(name):
        return
    plain = import_model(path, tmp_path / "plain.mlir", "--no-raise")
    assert "moe." not in plain.replace("moe.name", "").replace(
        "moe.checkpoint", "").replace("moe.source", "").replace("moe.onnx_producer", "")
    check_numerics(name, tmp_path / "plain.mlir", tmp_path, "plain",
                   extra=("--weights", str(path)))


@pytest.mark.parametrize("name", list(R.REFUSED))
def test_refused(name, models, tmp_path):
    path = models / (name + ".onnx")
    text = import_model(path, tmp_path / "m.mlir")
    assert moe_ops(text) == {"route": 0, "dispatch": 0, "expert_ffn": 0,
                             "combine": 0}, text
    check_numerics(name, path, tmp_path, "plain")
