"""moe-mlir's ONNX importer end to end: ONNX models with com.microsoft.MoE /
com.microsoft.QMoE run by

    moe-run --onnx MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR   (JIT)
    moe-run MODEL.onnx ...                                                 (same)
    moe-compile MODEL.onnx -o model.so; moe-run model.so --input ... --output-dir DIR

which must write every graph output as DIR/<name>.npy (characters outside
[A-Za-z0-9._-] replaced by '_').

Oracle: ONNX Runtime 1.30's CPU provider where it runs the model; where it
rejects a valid model (swiglu_fusion 0 or 2, fc3), the NumPy reference of
moe_models.py, which test_reference_vs_ort.py checks against ORT on every
combination ORT does run (without ORT installed, the reference throughout).
Tolerance: max|ours - oracle| <= 1e-5 * max|oracle| for f32 outputs, 2e-3
for f16 (see moe_models.tolerance).

Bad inputs must fail cleanly: non-zero exit status (not a signal), exactly
one line on stderr naming what is wrong, and no output files. That holds for
models the op schemas exclude (moe_models.invalid_reason); a few models
outside the schemas with one obvious meaning (3-D router logits,
use_sparse_mixer=1 which ORT's CPU provider ignores, a QMoE block larger
than the row) may either run correctly or fail cleanly
(moe_models.optional_reason).

Tools: $MOE_RUN / $MOE_COMPILE, else <repo>/build/bin/moe-run, moe-compile.
When they are missing (or lack ONNX support) these tests FAIL, on purpose."""

import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the python onnx package builds the test models")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)
import moe_models as M  # noqa: E402
import ort_runner  # noqa: E402

MOE_RUN = os.environ.get("MOE_RUN") or os.path.join(ROOT, "build", "bin", "moe-run")
MOE_COMPILE = os.environ.get("MOE_COMPILE") or os.path.join(ROOT, "build", "bin", "moe-compile")
TIMEOUT = 300

# Every combination of the matrices (2-bit QMoE is not part of the
# importer's contract). VALID ones must run and match the oracle, except that
# those with an optional_reason() may instead be rejected cleanly; INVALID
# ones must be rejected.
VALID = [s for s in M.moe_matrix() + M.qmoe_matrix() if M.invalid_reason(s) is None]
INVALID = [s for s in M.moe_matrix() + M.qmoe_matrix() if M.invalid_reason(s) is not None]

# A few of them also ahead of time.
AOT = [
    M.MoESpec(activation="silu"),
    M.MoESpec(activation="swiglu", swiglu_fusion=1, weights="external", fc1_bias=True,
              fc2_bias=True),
    M.MoESpec(activation="swiglu", swiglu_fusion=1, weights="input", shape=(2, 3),
              router="genai", fc2_bias=True),
    M.MoESpec(activation="swiglu", swiglu_fusion=0),
    M.MoESpec(H=64, I=32, E=4, activation="swiglu", swiglu_fusion=1, bits=4, block_size=16),
    M.MoESpec(H=64, I=32, E=4, activation="swiglu", swiglu_fusion=1, bits=8, block_size=0,
              zero_points=True),
]
_VALID_NAMES = {s.name() for s in VALID}
assert all(s.name() in _VALID_NAMES for s in AOT)


def sanitize(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def tool(path, what):
    assert os.path.isfile(path) and os.access(path, os.X_OK), (
        f"{what} not found at {path}: build it (tools/{what}) or set "
        f"{'MOE_RUN' if what == 'moe-run' else 'MOE_COMPILE'}; the ONNX importer is "
        "needed for these tests")
    return path


def save_inputs(feeds, directory):
    os.makedirs(directory, exist_ok=True)
    args = []
    for i, (name, value) in enumerate(feeds.items()):
        path = os.path.join(directory, f"in{i}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    return args


def run_tool(cmd, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def run_jit(model, feeds, work, positional=False, cwd=None):
    """Runs moe-run on an .onnx file; returns (CompletedProcess, out dir)."""
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    args = save_inputs(feeds, os.path.join(work, "inputs"))
    model_args = [model] if positional else ["--onnx", model]
    proc = run_tool([tool(MOE_RUN, "moe-run"), *model_args, *args, "--output-dir", out], cwd)
    return proc, out


def compile_aot(model, work, cwd=None):
    os.makedirs(work, exist_ok=True)
    lib = os.path.join(work, "model.so")
    proc = run_tool([tool(MOE_COMPILE, "moe-compile"), model, "-o", lib], cwd)
    return proc, lib


def run_aot(lib, feeds, work, cwd=None):
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    args = save_inputs(feeds, os.path.join(work, "inputs"))
    proc = run_tool([tool(MOE_RUN, "moe-run"), lib, *args, "--output-dir", out], cwd)
    return proc, out


def describe(proc):
    return f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}"


def read_outputs(proc, out, expected):
    """The tool's outputs by graph output name; checks the file set."""
    assert proc.returncode == 0, f"moe-mlir failed: {describe(proc)}"
    files = sorted(f for f in os.listdir(out) if f.endswith(".npy"))
    want = sorted(sanitize(n) + ".npy" for n in expected)
    assert files == want, f"output files {files}, expected {want}"
    return {n: np.load(os.path.join(out, sanitize(n) + ".npy")) for n in expected}


def assert_matches(got, expected, tol, what):
    for name, exp in expected.items():
        g = got[name]
        assert g.shape == exp.shape, f"{what}: '{name}' shape {g.shape} != {exp.shape}"
        assert g.dtype == exp.dtype, f"{what}: '{name}' dtype {g.dtype} != {exp.dtype}"
        e64 = np.asarray(exp, np.float64)
        scale = max(np.abs(e64).max(), 1e-30)
        err = np.abs(np.asarray(g, np.float64) - e64).max()
        assert np.all(np.isfinite(g)), f"{what}: '{name}' has non-finite values"
        assert err <= tol * scale, (
            f"{what}: '{name}' max error {err:.3e} > {tol:.0e} * max|expected| {scale:.3e}")


def assert_clean_failure(proc, out_dir, names, what):
    """Non-zero exit (no crash), one line on stderr mentioning one of `names`
    (plain substrings; a name of 3 characters or fewer must appear as a
    word), and no output files."""
    assert proc.returncode != 0, f"{what}: expected a failure, got {describe(proc)}"
    assert proc.returncode > 0, f"{what}: killed by signal {-proc.returncode}: {describe(proc)}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected a one-line error, got {describe(proc)}"

    def mentions(n):
        if len(n) <= 3:
            return re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", lines[0])
        return n in lines[0]

    assert any(mentions(n) for n in names), (
        f"{what}: the error should name one of {names}: {lines[0]!r}")
    if out_dir is not None and os.path.isdir(out_dir):
        assert os.listdir(out_dir) == [], f"{what}: left output files {os.listdir(out_dir)}"


# ---------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """{spec name: (Case, {output name: expected array}, source)}; ORT runs
    all the models in one process."""
    root = tmp_path_factory.mktemp("onnx_moe_models")
    cases = [M.build_case(s, str(root / f"case{i}")) for i, s in enumerate(VALID)]
    results = [None] * len(cases)
    reason = ort_runner.unavailable_reason()
    if reason is None:
        results = ort_runner.run_many([(c.path, c.feeds) for c in cases])
    else:
        warnings.warn(f"ONNX Runtime unavailable ({reason}): the NumPy reference is the "
                      "only oracle")
    table = {}
    for c, r in zip(cases, results):
        rejection = M.ort_cpu_rejection(c.spec)
        if r is not None and not isinstance(r, ort_runner.OrtError):
            assert rejection is None, f"ORT now runs {c.spec.name()}; update the record"
            table[c.spec.name()] = (c, r[0], "ONNX Runtime")
            continue
        if isinstance(r, ort_runner.OrtError):
            assert rejection is not None and rejection[1] in r.message, (
                f"ORT rejected {c.spec.name()} unexpectedly: {r}")
        ref = M.reference(c.spec, c.x, c.weights)
        table[c.spec.name()] = (c, {c.spec.output_name: ref}, "reference")
    return table


# ---------------------------------------------------------------------------
# Valid models
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", VALID, ids=[s.name() for s in VALID])
def test_jit(spec, oracle, tmp_path):
    case, expected, source = oracle[spec.name()]
    proc, out = run_jit(case.path, case.feeds, str(tmp_path))
    optional = M.optional_reason(spec)
    if optional is not None and proc.returncode != 0:
        # Outside the schema: a clean refusal is fine too.
        assert_clean_failure(proc, out, optional[1], optional[0])
        return
    got = read_outputs(proc, out, expected)
    assert_matches(got, expected, M.tolerance(spec), f"moe-run vs {source}")


@pytest.mark.parametrize("spec", AOT, ids=[s.name() for s in AOT])
def test_aot(spec, oracle, tmp_path):
    case, expected, source = oracle[spec.name()]
    proc, lib = compile_aot(case.path, str(tmp_path))
    assert proc.returncode == 0 and os.path.isfile(lib), f"moe-compile: {describe(proc)}"
    # Run from another directory: the library must find the .onnx (and its
    # external data) by itself.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, out = run_aot(lib, case.feeds, str(tmp_path / "run"), cwd=str(elsewhere))
    got = read_outputs(proc, out, expected)
    assert_matches(got, expected, M.tolerance(spec), f"moe-compile + moe-run vs {source}")


def test_model_as_positional_argument(oracle, tmp_path):
    spec = M.MoESpec(activation="swiglu", swiglu_fusion=1)
    case, expected, source = oracle[spec.name()]
    proc, out = run_jit(case.path, case.feeds, str(tmp_path), positional=True)
    assert_matches(read_outputs(proc, out, expected), expected, 1e-5, f"moe-run FILE vs {source}")


def test_output_names_are_sanitized(oracle, tmp_path):
    spec = M.MoESpec(input_name="input.1", output_name="moe/out:0")
    case, expected, _ = oracle[spec.name()]
    proc, out = run_jit(case.path, case.feeds, str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    assert sorted(f for f in os.listdir(out) if f.endswith(".npy")) == ["moe_out_0.npy"]


def test_external_data_is_found_next_to_the_model(oracle, tmp_path):
    """A relative model path from another working directory: the data file is
    looked up beside the model, not in the working directory."""
    spec = M.MoESpec(weights="external")
    case, expected, source = oracle[spec.name()]
    model_dir = tmp_path / "models" / "sub"
    shutil.copytree(os.path.dirname(case.path), model_dir)
    proc, out = run_jit(os.path.join("models", "sub", "model.onnx"), case.feeds,
                        str(tmp_path / "work"), cwd=str(tmp_path))
    assert_matches(read_outputs(proc, out, expected), expected, 1e-5, f"moe-run vs {source}")


def test_aot_reads_initializers_at_run_time(tmp_path):
    """moe-compile keeps the weights in the .onnx file: replacing it by a
    model of the same structure with other weights changes the results (or,
    if the library checks the file, fails cleanly naming it)."""
    spec = M.MoESpec(activation="silu", fc1_bias=True)
    a = M.build_case(spec, str(tmp_path / "a"), seed=1)
    b = M.build_case(spec, str(tmp_path / "b"), seed=2)
    model = str(tmp_path / "model.onnx")
    shutil.copy(a.path, model)
    proc, lib = compile_aot(model, str(tmp_path / "build"))
    assert proc.returncode == 0, f"moe-compile: {describe(proc)}"
    shutil.copy(b.path, model)
    feeds = dict(b.feeds)
    proc, out = run_aot(lib, feeds, str(tmp_path / "run"))
    if proc.returncode != 0:
        assert_clean_failure(proc, out, ["model.onnx"], "changed .onnx under a compiled model")
        return
    expected = {spec.output_name: M.reference(spec, b.x, b.weights)}
    assert_matches(read_outputs(proc, out, expected), expected, 1e-5,
                   "compiled model with replaced initializers vs reference")


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


def _small_case(tmp_path, **kw):
    spec = M.MoESpec(**kw)
    return M.build_case(spec, str(tmp_path / "model"))


def _shape_pattern(dims):
    """The dims in order, in any usual notation ([8, 48, 32], {8,48,32}, 8x48x32)."""
    return r"\D{1,3}".join(str(d) for d in dims)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not an ONNX model\n")
    proc, out = run_jit(str(bad), {}, str(tmp_path / "work"))
    assert_clean_failure(proc, out, ["notes.onnx"], "not an ONNX file")


def test_truncated_file(tmp_path):
    case = _small_case(tmp_path)
    data = open(case.path, "rb").read()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) * 3 // 5])
    proc, out = run_jit(str(bad), case.feeds, str(tmp_path / "work"))
    assert_clean_failure(proc, out, ["truncated.onnx"], "truncated ONNX file")


WRONG_SHAPES = [
    # (operand, wrong shape, expected shape) for H=32, I=48, E=8: each wrong in
    # a dimension that the other tensors fix (H by the hidden states, E by
    # the router weight [32, 8] and fc2, I by fc2 and the biases).
    ("fc1_experts_weights", (8, 48, 31), (8, 48, 32)),
    ("fc1_experts_weights", (6, 48, 32), (8, 48, 32)),
    ("fc2_experts_weights", (8, 31, 48), (8, 32, 48)),
    ("fc2_experts_bias", (8, 33), (8, 32)),
]


@pytest.mark.parametrize("operand,wrong,expected", WRONG_SHAPES,
                         ids=[f"{w[0]}-{'x'.join(map(str, w[1]))}" for w in WRONG_SHAPES])
def test_moe_weight_with_wrong_shape(operand, wrong, expected, tmp_path):
    spec = M.MoESpec(fc2_bias=True)
    x, w = M.make_any_case(spec)
    path = str(tmp_path / "model.onnx")
    tensor = "layers.0.moe." + operand
    extra = M.build_model(spec, w, path, overrides={operand: np.zeros(wrong, np.float32)},
                          rename={operand: tensor})
    proc, out = run_jit(path, M.feeds_for(spec, x, extra), str(tmp_path / "work"))
    assert_clean_failure(proc, out, [operand, tensor], f"wrong {operand} shape")
    line = proc.stderr.strip()
    assert re.search(_shape_pattern(expected), line), (
        f"the error should give the expected shape {expected}: {line!r}")


def test_missing_external_data_file(tmp_path):
    case = _small_case(tmp_path, weights="external")
    data = M.external_data_file(case.path)
    assert os.path.isfile(data)
    os.remove(data)
    proc, out = run_jit(case.path, case.feeds, str(tmp_path / "work"))
    assert_clean_failure(proc, out, [os.path.basename(data)], "missing external data")


def _unsupported_model(path, kind):
    """x0 -> MatMul (supported: MoE routers use it) -> an unsupported op -> y.
    Returns (node name, op type) of the unsupported node."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    opsets = [helper.make_opsetid("", M.OPSET)]
    if kind == "custom":
        node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob_node",
                                domain="org.example.unsupported")
        opsets.append(helper.make_opsetid("org.example.unsupported", 1))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])
    else:
        node = helper.make_node("Det", ["x"], ["y"], name="det_node")
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    matmul = helper.make_node("MatMul", ["x0", "w"], ["x"], name="matmul_node")
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph([matmul, node], "unsupported",
                              [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [4, 4])],
                              [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = M.IR_VERSION
    onnx.save(model, path)
    return node.name, node.op_type


@pytest.mark.parametrize("kind", ["custom", "standard"])
def test_unsupported_op(kind, tmp_path):
    path = str(tmp_path / "model.onnx")
    node_name, op_type = _unsupported_model(path, kind)
    feeds = {"x0": np.eye(4, dtype=np.float32)}
    proc, out = run_jit(path, feeds, str(tmp_path / "work"))
    assert_clean_failure(proc, out, [node_name], f"unsupported op {op_type}")
    assert op_type in proc.stderr, f"the error should name the op type {op_type}: {proc.stderr!r}"


@pytest.mark.parametrize("layout", ["legacy_fc1", "legacy"])
@pytest.mark.parametrize("activation", ["silu", "swiglu"])
def test_old_layout_trap_is_rejected(layout, activation, tmp_path):
    """fc1 [E, H, I] with H != I must be rejected with an error naming the
    input: fc1 when only fc1 has the old layout; fc1 or fc2 when both do
    (fc1 [E, H, I], fc2 [E, I, H]: ORT 1.30 runs that with wrong numbers)."""
    fusion = 1 if activation == "swiglu" else None
    case = _small_case(tmp_path, H=32, I=48, layout=layout, activation=activation,
                       swiglu_fusion=fusion)
    names = ["fc1_experts_weights"] + (["fc2_experts_weights"] if layout == "legacy" else [])
    proc, out = run_jit(case.path, case.feeds, str(tmp_path / "work"))
    assert_clean_failure(proc, out, names, f"old layout ({layout})")


@pytest.mark.parametrize("spec", INVALID, ids=[s.name() for s in INVALID])
def test_invalid_model_is_rejected(spec, tmp_path):
    """Models the op schemas exclude (k > E, use_sparse_mixer with k != 2,
    the old layouts, QMoE block sizes and zero point layouts the schema
    forbids): a clean error naming the culprit."""
    why, names = M.invalid_reason(spec)
    case = M.build_case(spec, str(tmp_path / "model"))
    proc, out = run_jit(case.path, case.feeds, str(tmp_path / "work"))
    assert_clean_failure(proc, out, names, why)


def test_aot_bad_inputs_produce_no_library(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("not a model")
    proc, lib = compile_aot(str(bad), str(tmp_path / "a"))
    assert_clean_failure(proc, None, ["notes.onnx"], "moe-compile on a text file")
    assert not os.path.exists(lib), "moe-compile left a library behind"

    case = _small_case(tmp_path, H=32, I=48, layout="legacy_fc1")
    proc, lib = compile_aot(case.path, str(tmp_path / "b"))
    assert_clean_failure(proc, None, ["fc1_experts_weights"], "moe-compile, old fc1 layout")
    assert not os.path.exists(lib), "moe-compile left a library behind"


def test_aot_missing_external_data_at_run_time(tmp_path):
    case = _small_case(tmp_path, weights="external")
    proc, lib = compile_aot(case.path, str(tmp_path / "build"))
    assert proc.returncode == 0, f"moe-compile: {describe(proc)}"
    data = M.external_data_file(case.path)
    os.remove(data)
    proc, out = run_aot(lib, case.feeds, str(tmp_path / "run"))
    assert_clean_failure(proc, out, [os.path.basename(data)], "compiled model, data file gone")
