"""The moe_mlir Python module (python-bindings/) against the tools and the
references.

For every Hugging Face model type (a tiny random checkpoint written by
scripts/gen_hf_checkpoint.py), imported and compiled from Python:
  - the prompt logits, the greedy tokens and the logits each token was
    chosen from equal moe-run's (--hf DIR, compiled independently by the
    JIT) bit for bit;
  - they match the PyTorch reference (test/Integration/reference): logits
    within 1e-4 of max|logit|, the same greedy tokens;
  - the model saved from Python runs in moe-run with the same results, and
    moe_mlir.load() gives it back.
An ONNX model with com.microsoft.MoE (test/Integration/onnx/moe_models.py)
is compared with moe-run --onnx (bit for bit) and with the NumPy reference
of ONNX Runtime's kernel. Errors must raise the documented exception types
with the tools' one-line messages (without "moe-run: " / "moe-compile: ").

Tools come from MOE_RUN / MOE_COMPILE / MOE_IMPORT / MOE_OPT (set by the lit
test), else <repo>/build/bin; the module from PYTHONPATH."""

import ast
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import moe_mlir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "reference"))
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "onnx"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gen_hf_checkpoint  # noqa: E402


def _tool(name):
    env = name.upper().replace("-", "_")
    return os.environ.get(env) or os.path.join(ROOT, "build", "bin", name)


MOE_RUN = _tool("moe-run")
MOE_COMPILE = _tool("moe-compile")
MOE_IMPORT = _tool("moe-import")
MOE_OPT = _tool("moe-opt")

MODEL_TYPES = ["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"]
PROMPT = [3, 17, 42, 7, 99, 1, 250, 64, 12, 5]
GENERATE = 6
TOLERANCE = 1e-4  # relative to max|logit|

ADD_MLIR = os.path.join(ROOT, "test", "Tools", "Inputs", "add.mlir")


def run_tool(cmd, check=True):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    return proc


def tool_error(cmd, tool="moe-run"):
    """The one line a tool prints when it fails, without its name."""
    proc = run_tool(cmd, check=False)
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    prefix = tool + ": "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


def raised(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------
# Hugging Face models
# ---------------------------------------------------------------------------


class HFModel:
    def __init__(self, directory, module, model):
        self.directory = directory
        self.module = module
        self.model = model
        self._moe_run = None
        self._reference = None

    def moe_run(self, tmp):
        """moe-run --hf DIR: prompt logits, tokens, step logits."""
        if self._moe_run is None:
            logits = os.path.join(tmp, "logits.npy")
            steps = os.path.join(tmp, "steps.npy")
            out = run_tool([MOE_RUN, "--hf", self.directory, "--tokens",
                            ",".join(map(str, PROMPT)), "--logits-out", logits,
                            "--generate", str(GENERATE), "--generate-logits-out",
                            steps]).stdout
            self._moe_run = (np.load(logits),
                             [int(t) for t in out.strip().split(",")],
                             np.load(steps))
        return self._moe_run


@pytest.fixture(scope="module", params=MODEL_TYPES)
def hf(request, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp(request.param) / "checkpoint")
    gen_hf_checkpoint.generate(directory, model_type=request.param)
    module = moe_mlir.import_hf(directory)
    return HFModel(directory, module, module.compile())


def test_hf_identical_to_moe_run(hf, tmp_path):
    logits = hf.model.logits(PROMPT)
    ids, steps = hf.model.generate(PROMPT, GENERATE, return_logits=True)
    ref_logits, ref_ids, ref_steps = hf.moe_run(str(tmp_path))
    assert logits.dtype == np.float32 and logits.shape == ref_logits.shape
    assert np.array_equal(logits, ref_logits), np.abs(logits - ref_logits).max()
    assert ids.dtype == np.int64 and ids.tolist() == ref_ids
    assert np.array_equal(steps, ref_steps)


def test_hf_against_pytorch_reference(hf):
    torch = pytest.importorskip("torch")
    import hf_model_reference

    torch.set_num_threads(2)
    model = hf_model_reference.load(hf.directory)
    expected = hf_model_reference.forward(model, PROMPT).detach().numpy()
    logits = hf.model.logits(PROMPT)
    err = float(np.abs(logits - expected).max()) / float(np.abs(expected).max())
    assert err <= TOLERANCE, f"max error {err:.3g} of max|logit|"
    assert hf.model.generate(PROMPT, GENERATE).tolist() == list(
        hf_model_reference.generate(model, PROMPT, GENERATE))


def test_hf_saved_model_runs_in_moe_run(hf, tmp_path):
    library = str(tmp_path / "model.so")
    hf.model.save(library)
    logits_path = str(tmp_path / "logits.npy")
    out = run_tool([MOE_RUN, library, "--tokens", ",".join(map(str, PROMPT)),
                    "--logits-out", logits_path, "--generate", str(GENERATE)])
    assert np.array_equal(np.load(logits_path), hf.model.logits(PROMPT))
    assert [int(t) for t in out.stdout.strip().split(",")] == \
        hf.model.generate(PROMPT, GENERATE).tolist()
    loaded = moe_mlir.load(library)
    assert loaded.inputs == hf.model.inputs and loaded.outputs == hf.model.outputs
    assert loaded.checkpoint == os.path.abspath(hf.directory)
    assert np.array_equal(loaded.logits(PROMPT), hf.model.logits(PROMPT))


def test_hf_expert_parallel_saved_model(hf, tmp_path):
    """compile(ep=2) shards the experts over 2 ranks; the saved library runs
    as 2 ranks in moe-run bitwise like the unsharded model (compiled without
    moe-fuse-shared-expert, which leaves sharded layers alone), and refuses
    to run outside an expert-parallel group."""
    sharded = hf.module.compile(ep=2)
    with pytest.raises(moe_mlir.Error):
        sharded.logits(PROMPT)
    library = str(tmp_path / "model-ep2.so")
    sharded.save(library)
    logits_path = str(tmp_path / "logits-ep2.npy")
    run_tool([MOE_RUN, library, "--ep", "2", "--tokens",
              ",".join(map(str, PROMPT)), "--logits-out", logits_path])
    unsharded = hf.module.compile(optimize="fuse-shared-expert=false")
    assert np.array_equal(np.load(logits_path), unsharded.logits(PROMPT))


def test_hf_module_text_is_moe_import_output(hf):
    text = run_tool([MOE_IMPORT, hf.directory, "-o", "-"]).stdout
    assert str(hf.module).rstrip() == text.rstrip()
    assert hf.module.checkpoint == os.path.abspath(hf.directory)


def test_hf_session_decodes_with_caches(hf):
    ids, steps = hf.model.generate(PROMPT, GENERATE, return_logits=True)
    lm = hf.model.language_model()
    assert lm.vocab_size == steps.shape[1] and lm.cached_tokens == 0
    logits = lm.forward(np.array(PROMPT, np.int64))
    assert np.array_equal(logits[-1], steps[0])
    for i in range(1, GENERATE):
        row = lm.forward([int(ids[i - 1])])
        assert np.array_equal(row[0], steps[i])
    assert lm.cached_tokens == len(PROMPT) + GENERATE - 1
    lm.reset()
    assert lm.cached_tokens == 0
    assert lm.generate(PROMPT, 3).tolist() == ids[:3].tolist()
    stats = lm.last_stats
    assert stats["decode_steps"] == 2 and stats["prefill_ms"] >= 0


def test_hf_call_by_name(hf):
    """The entry point called directly: input_ids, logits_to_keep and empty
    caches by name, weights bound from the checkpoint."""
    model = hf.model
    caches = {}
    for spec in model.inputs:
        if spec.name.startswith("cache."):
            shape = (0,) + tuple(spec.shape[1:])
            caches[spec.name] = np.zeros(shape, np.float32)
        elif spec.name not in ("input_ids", "logits_to_keep"):
            assert model.has_weight(spec.name), spec
    everything = np.array([0], np.int64)
    out = model(input_ids=np.array(PROMPT, np.int64), logits_to_keep=everything,
                **caches)
    assert list(out) == [s.name for s in model.outputs]
    assert np.array_equal(out["logits"], model.logits(PROMPT))
    # Positionally: input_ids is the first input.
    again = model(np.array(PROMPT), logits_to_keep=everything, **caches)
    assert np.array_equal(again["logits"], out["logits"])
    for name in caches:
        assert out[name].shape[0] == len(PROMPT)
    # logits_to_keep = N: the last N rows only, the same values (N >= S: all).
    for keep in (1, 3, len(PROMPT) + 2):
        last = model(np.array(PROMPT), logits_to_keep=np.array([keep]),
                     **caches)["logits"]
        rows = min(keep, len(PROMPT))
        assert np.array_equal(last, out["logits"][-rows:]), keep


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_case(tmp_path_factory):
    pytest.importorskip("onnx", reason="the python onnx package builds the model")
    import moe_models as M

    spec = M.MoESpec(activation="swiglu", swiglu_fusion=1, fc1_bias=True,
                     fc2_bias=True, shape=(7,))
    case = M.build_case(spec, str(tmp_path_factory.mktemp("onnx")))
    module = moe_mlir.import_model(case.path)
    return M, case, module, module.compile()


def test_onnx_identical_to_moe_run_and_reference(onnx_case, tmp_path):
    M, case, module, model = onnx_case
    spec = case.spec
    assert [s.name for s in model.inputs][:1] == [spec.input_name]
    assert model.checkpoint == os.path.abspath(case.path)
    out = model(case.feeds[spec.input_name])
    assert list(out) == [spec.output_name]
    got = out[spec.output_name]

    args = []
    for i, (name, value) in enumerate(case.feeds.items()):
        path = str(tmp_path / f"in{i}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    run_tool([MOE_RUN, "--onnx", case.path, *args, "--output-dir", str(tmp_path)])
    tool = np.load(str(tmp_path / f"{spec.output_name}.npy"))
    assert got.dtype == tool.dtype and np.array_equal(got, tool)

    expected = M.reference(spec, case.x, case.weights)
    err = float(np.abs(got.astype(np.float64) - expected).max())
    assert err <= M.tolerance(spec) * float(np.abs(expected).max())

    # The same by name and through run().
    assert np.array_equal(model(**case.feeds)[spec.output_name], got)
    assert np.array_equal(model.run(case.feeds)[spec.output_name], got)
    assert np.array_equal(model.run([case.feeds[spec.input_name]])[spec.output_name], got)


def test_onnx_f16_inputs_converted(tmp_path):
    pytest.importorskip("onnx", reason="the python onnx package builds the model")
    import moe_models as M

    spec = M.MoESpec(dtype="f16", shape=(4,))
    case = M.build_case(spec, str(tmp_path))
    model = moe_mlir.import_onnx(case.path).compile()
    assert model.inputs[0].dtype == "f16"
    x16 = case.feeds[spec.input_name]
    out16 = model(x16)[spec.output_name]
    assert out16.dtype == np.float16
    # float32 data is rounded to f16 as moe-run does with float32 .npy files.
    out32 = model(x16.astype(np.float32))[spec.output_name]
    assert np.array_equal(out16, out32)


def test_contiguous_inputs_are_not_copied(onnx_case):
    """A C-contiguous input of the model's dtype is passed as is; a
    non-contiguous one is copied (which NumPy's allocations show)."""
    _, case, _, model = onnx_case
    spec = case.spec
    hidden = case.feeds[spec.input_name].shape[1]
    x = np.random.default_rng(1).standard_normal((8192, hidden)).astype(np.float32)
    model(x)  # weights bound before measuring

    def peak(array):
        tracemalloc.start()
        model(array)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    fortran = np.asfortranarray(x)
    assert peak(x) < x.nbytes // 4
    assert peak(fortran) >= x.nbytes
    assert np.array_equal(model(fortran)[spec.output_name],
                          model(x)[spec.output_name])
    readonly = x.copy()
    readonly.setflags(write=False)
    model(readonly)


def test_bad_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff\xff")
    expected = tool_error([MOE_RUN, "--onnx", str(bad)])
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.import_onnx(str(bad))
    assert raised(info) == expected
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.import_model(bad)  # os.PathLike
    assert raised(info) == expected


# ---------------------------------------------------------------------------
# MLIR, pipelines, inputs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def add_model():
    return moe_mlir.Module.from_file(ADD_MLIR).compile()


def test_parse_and_pipelines():
    text = open(ADD_MLIR).read()
    module = moe_mlir.parse(text)
    assert module.checkpoint is None
    assert "arith.addf" in str(module)
    module.verify()
    same = moe_mlir.import_model(ADD_MLIR)
    assert str(same) == str(module)
    copy = module.clone()
    assert module.run_pipeline("canonicalize,cse") is module
    module.run_pipeline("builtin.module(canonicalize)")
    lowered = copy.run_pipeline("moe-cpu-pipeline")
    expected = run_tool([MOE_OPT, "--moe-cpu-pipeline", ADD_MLIR]).stdout
    assert str(lowered).rstrip() == expected.rstrip()
    # Compiling leaves the module as it was.
    before = str(module)
    module.compile()
    assert str(module) == before


def test_call_conventions(add_model):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    assert add_model.entry == "add"
    assert [repr(s) for s in add_model.inputs] == [
        "TensorSpec(name='a', dtype='f32', shape=(2, 3))",
        "TensorSpec(name='b', dtype='f32', shape=(None, 3))"]
    assert add_model.outputs[0].name == "sum"
    expected = a + b
    assert np.array_equal(add_model(a, b)["sum"], expected)
    assert np.array_equal(add_model(a, b=b)["sum"], expected)
    assert np.array_equal(add_model(b=b, a=a)["sum"], expected)
    assert np.array_equal(add_model.run({"a": a, "b": b})["sum"], expected)
    # Lists take the input's dtype.
    assert np.array_equal(add_model(a.tolist(), b.tolist())["sum"], expected)
    # Results own their memory.
    out = add_model(a, b)["sum"]
    del a
    assert np.array_equal(out, expected)


def test_input_errors_match_moe_run(add_model, tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b4 = np.ones((2, 4), np.float32)
    ints = np.ones((2, 3), np.int32)
    for name, value in (("a", a), ("b4", b4), ("i", ints)):
        np.save(str(tmp_path / f"{name}.npy"), value)

    def tool_line(*inputs):
        args = []
        for spec in inputs:
            args += ["--input", spec]
        line = tool_error([MOE_RUN, ADD_MLIR, *args])
        return line[:line.rindex(" (")]  # the .npy file moe-run names

    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        add_model(a, b4)
    assert isinstance(info.value, ValueError)
    assert raised(info) == tool_line(f"a={tmp_path}/a.npy", f"b={tmp_path}/b4.npy")
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        add_model(ints, a)
    assert raised(info) == tool_line(f"a={tmp_path}/i.npy", f"b={tmp_path}/a.npy")

    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        add_model(a)
    assert raised(info) == "missing input 'b' (input 1 of @add: f32 [?, 3])"
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        add_model(a.astype(np.float64), a)
    assert raised(info) == ("input 'a': dtype float64 is not supported "
                            "(the model takes f32)")
    with pytest.raises(TypeError, match="@add has no input named 'c'"):
        add_model(a, a, c=a)
    with pytest.raises(TypeError, match="given both by position and by name"):
        add_model(a, a=a)
    with pytest.raises(TypeError, match="takes 2 inputs, got 3"):
        add_model(a, a, a)


def test_file_errors_match_tools(tmp_path):
    missing = str(tmp_path / "no-such-checkpoint")
    expected = tool_error([MOE_RUN, "--hf", missing, "--tokens", "1",
                           "--generate", "1"])
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.import_hf(missing)
    assert raised(info) == expected

    missing_mlir = str(tmp_path / "missing.mlir")
    expected = tool_error([MOE_COMPILE, missing_mlir, "-o",
                           str(tmp_path / "x.so")], "moe-compile")
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.import_model(missing_mlir)
    assert raised(info) == expected

    truncated = os.path.join(ROOT, "test", "Tools", "Inputs", "truncated.mlir")
    proc = run_tool([MOE_RUN, truncated], check=False)
    expected = proc.stderr.strip().splitlines()[-1][len("moe-run: "):]
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.Module.from_file(truncated)
    assert raised(info).startswith(expected + ": ")
    with pytest.raises(moe_mlir.Error, match=r"^could not parse <string>: 1:13: "):
        moe_mlir.parse("func.func @f(")

    library = str(tmp_path / "missing.so")
    expected = tool_error([MOE_RUN, library])
    with pytest.raises(moe_mlir.Error) as info:
        moe_mlir.load(library)
    assert raised(info) == expected
    with pytest.raises(moe_mlir.InvalidArgumentError, match="load it with moe_mlir.load"):
        moe_mlir.import_model(library)


def test_pipeline_errors():
    module = moe_mlir.Module.from_file(ADD_MLIR)
    proc = run_tool([MOE_OPT, "--pass-pipeline=builtin.module(no-such-pass)",
                     ADD_MLIR], check=False)
    assert proc.returncode != 0
    tool_message = "'no-such-pass' does not refer to a registered pass or pass pipeline"
    assert tool_message in proc.stderr
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        module.run_pipeline("no-such-pass")
    assert raised(info) == f"pass pipeline 'no-such-pass': {tool_message}"
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        module.run_pipeline("builtin.module(no-such-pass)")
    assert raised(info).endswith(tool_message)
    # A pass that fails on the module: its first error, after the file.
    pipeline = "one-shot-bufferize{bufferize-function-boundaries}"
    proc = run_tool([MOE_OPT, f"--pass-pipeline=builtin.module({pipeline})",
                     ADD_MLIR], check=False)
    assert "error: op was not bufferized" in proc.stderr
    with pytest.raises(moe_mlir.Error) as info:
        module.run_pipeline(pipeline)
    assert not isinstance(info.value, ValueError)
    assert raised(info) == f"{ADD_MLIR}: op was not bufferized"


def test_compile_errors_match_moe_compile(tmp_path):
    path = tmp_path / "private.mlir"
    path.write_text("func.func private @f(%a: tensor<2xf32>) -> tensor<2xf32> {\n"
                    "  return %a : tensor<2xf32>\n}\n")
    expected = tool_error([MOE_COMPILE, str(path), "-o", str(tmp_path / "x.so")],
                          "moe-compile")
    module = moe_mlir.Module.from_file(path)
    with pytest.raises(moe_mlir.Error) as info:
        module.compile()
    assert raised(info) == expected
    expected = tool_error([MOE_COMPILE, str(path), "--entry", "g", "-o",
                           str(tmp_path / "x.so")], "moe-compile")
    with pytest.raises(moe_mlir.Error) as info:
        module.compile(entry="g")
    assert raised(info) == expected
    assert module.compile(entry="f").entry == "f"
    # The bf16 dot-product choice is checked as moe-compile checks it.
    for args, kwargs in (
            (["--cpu=x86-64-v3", "--bf16-dot=on"], dict(cpu="x86-64-v3", bf16_dot="on")),
            (["--bf16-dot=maybe"], dict(bf16_dot="maybe"))):
        expected = tool_error([MOE_COMPILE, str(path), "--entry", "f", *args,
                               "-o", str(tmp_path / "x.so")], "moe-compile")
        with pytest.raises(ValueError) as info:
            module.compile(entry="f", **kwargs)
        assert raised(info) == expected
    assert module.compile(entry="f", bf16_dot="off").entry == "f"


def test_targets_not_implemented():
    module = moe_mlir.Module.from_file(ADD_MLIR)
    with pytest.raises(moe_mlir.UnsupportedError) as info:
        module.compile(target="cuda")
    assert isinstance(info.value, NotImplementedError)
    assert raised(info) == ("target 'cuda': GPU code generation is not "
                            "implemented yet (compile for target 'cpu')")
    with pytest.raises(moe_mlir.Error) as info:
        module.compile(ep=2)
    assert "no MoE layer" in raised(info) and "over 2 ranks" in raised(info)
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        module.compile(target="tpu")
    with pytest.raises(ValueError, match="at least 1, got 0"):
        module.compile(ep=0)


def test_token_errors_match_moe_run(tmp_path):
    directory = str(tmp_path / "checkpoint")
    gen_hf_checkpoint.generate(directory, model_type="qwen3_moe")
    library = str(tmp_path / "model.so")
    run_tool([MOE_COMPILE, directory, "-o", library])
    model = moe_mlir.load(library)
    vocab = model.outputs[0].shape[1]
    expected = tool_error([MOE_RUN, library, "--tokens", f"1,{vocab + 3}",
                           "--generate", "2"])
    assert expected.startswith("--tokens: ")
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        model.generate([1, vocab + 3], 2)
    assert raised(info) == expected[len("--tokens: "):]
    with pytest.raises(moe_mlir.InvalidArgumentError, match="1-D"):
        model.logits([[1, 2]])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="integers"):
        model.logits([1.5])
    with pytest.raises(moe_mlir.InvalidArgumentError, match="at least 0"):
        model.generate([1], -1)
    assert model.generate([1, 2], 0).shape == (0,)
    # Weights from elsewhere (moe-run --weights).
    other = moe_mlir.load(library, weights=os.path.join(directory, "model.safetensors"))
    assert np.array_equal(other.logits([1, 2]), model.logits([1, 2]))
    with pytest.raises(moe_mlir.Error):
        model.add_weights(str(tmp_path / "missing.safetensors"))
    add = moe_mlir.Module.from_file(ADD_MLIR).compile()
    with pytest.raises(moe_mlir.InvalidArgumentError,
                       match="is not a language model entry point"):
        add.generate([1], 1)


def test_threads(add_model):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = moe_mlir.num_threads()
    try:
        moe_mlir.set_num_threads(1)
        assert moe_mlir.num_threads() == 1
        one = add_model(a, a)["sum"]
        moe_mlir.set_num_threads(2)
        assert moe_mlir.num_threads() == 2
        assert np.array_equal(add_model(a, a)["sum"], one)
    finally:
        moe_mlir.set_num_threads(before)
    with pytest.raises(ValueError):
        moe_mlir.set_num_threads(0)


def test_header_and_metadata(add_model, tmp_path):
    header = tmp_path / "add.h"
    add_model.write_header(header)
    assert "moe_model_invoke" in header.read_text()
    assert add_model.metadata.splitlines()[:2] == ["moe-model-abi 1", "entry add"]


# ---------------------------------------------------------------------------
# Documentation: docstrings and stubs
# ---------------------------------------------------------------------------


def public_members(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def test_docstrings_and_stubs():
    package = os.path.dirname(moe_mlir.__file__)
    stubs = ast.parse(open(os.path.join(package, "_core.pyi")).read())
    classes = {node.name: node for node in stubs.body if isinstance(node, ast.ClassDef)}
    functions = {node.name for node in stubs.body if isinstance(node, ast.FunctionDef)}
    for name in moe_mlir.__all__:
        obj = getattr(moe_mlir, name)
        assert obj.__doc__, f"moe_mlir.{name} has no docstring"
        if name == "import_model":
            continue
        if isinstance(obj, type):
            assert name in classes, f"no stub for class {name}"
            if issubclass(obj, BaseException):
                continue
            stubbed = {n.name for n in classes[name].body
                       if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            assert public_members(obj) <= stubbed, (name, public_members(obj) - stubbed)
            for member in public_members(obj):
                assert getattr(obj, member).__doc__, f"{name}.{member} has no docstring"
        else:
            assert name in functions, f"no stub for {name}"
    init_stub = ast.parse(open(os.path.join(package, "__init__.pyi")).read())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "import_model"
               for n in init_stub.body)
    assert os.path.exists(os.path.join(package, "py.typed"))


def test_compile_optimize_options():
    """compile(optimize=...) takes moe-optimize's options as moe-opt does,
    or 'off'; a bad one is an InvalidArgumentError naming it."""
    module = moe_mlir.Module.from_file(ADD_MLIR)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for optimize in ("", "off", "fuse-shared-expert=false, fuse-gate-up=0",
                     "weight-absorption=naive", "fuse-dispatch-combine=false"):
        out = module.compile(optimize=optimize)(a, a)["sum"]
        assert np.array_equal(out, a + a), optimize
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        module.compile(optimize="fuse-gate-up=maybe")
    assert raised(info) == ("optimization option 'fuse-gate-up': expected "
                            "true or false, got 'maybe'")
    with pytest.raises(moe_mlir.InvalidArgumentError) as info:
        module.compile(optimize="fuse-everything")
    assert raised(info).startswith(
        "unknown optimization option 'fuse-everything' (known: ")
