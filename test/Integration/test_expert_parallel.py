"""Expert parallelism end to end: whole Hugging Face models compiled with
their MoE layers sharded over N ranks (moe-compile --ep N, or moe-run --ep N
on a checkpoint) and run as N ranks (threads of one process with
--backend local, processes under mpirun with --backend mpi) must give
bitwise the outputs of the unsharded model: prompt logits, the logits of
every cached decode step and the generated tokens. Placements: contiguous
(including E not divisible by N), round-robin and EPLB-balanced with
redundant replicas. One sharded run is also checked against the
independent PyTorch reference. Misuse and faults end with a one-line error
and a non-zero status within a bounded time.

Tools come from MOE_RUN / MOE_COMPILE; MOE_MPIRUN is the mpirun command
line (empty: the MPI backend was not built)."""

import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gen_hf_checkpoint  # noqa: E402
import hf_model_reference  # noqa: E402
from moe_harness import HOST_BF16  # noqa: E402

MOE_RUN = os.environ.get("MOE_RUN", "moe-run")
MOE_COMPILE = os.environ.get("MOE_COMPILE", "moe-compile")
MPIRUN = shlex.split(os.environ.get("MOE_MPIRUN", ""))

PROMPT = [3, 17, 42, 7, 99, 1, 250, 64, 12, 5, 77]
GENERATE = 4
TIMEOUT = 300

MODELS = {
    "mixtral": dict(model_type="mixtral"),            # 6 experts, k = 2
    "qwen2_moe": dict(model_type="qwen2_moe"),        # 12 experts, k = 3
    "qwen2_moe-bf16": dict(model_type="qwen2_moe", dtype="bfloat16"),
    "qwen3_moe": dict(model_type="qwen3_moe"),        # 10 experts, k = 2
    "deepseek_v2": dict(model_type="deepseek_v2"),    # 10 experts, k = 3
    "deepseek_v3": dict(model_type="deepseek_v3"),    # 12 experts, k = 3
}

# (model, ranks, placement options)
LOCAL_CASES = [
    ("mixtral", 2, []),
    ("mixtral", 4, []),                    # 6 experts: 2, 2, 1, 1
    ("qwen2_moe", 2, ["--placement", "round-robin"]),
    ("qwen2_moe-bf16", 4, []),
    ("qwen3_moe", 4, []),                  # 10 experts: 3, 3, 2, 2
    ("deepseek_v2", 2, ["--placement", "balanced", "--redundant", "2"]),
    ("deepseek_v3", 2, []),
    ("deepseek_v3", 4, ["--placement", "balanced", "--redundant", "4"]),
]
MPI_CASES = [
    ("mixtral", 2, []),
    ("deepseek_v3", 4, ["--placement", "balanced", "--redundant", "4"]),
]


def run(cmd, timeout=TIMEOUT):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    return proc.stdout


def fails(cmd, timeout=120):
    """Runs a command that must fail: returns its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 0, f"{' '.join(cmd)} succeeded"
    return proc.stderr


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


_checkpoints = {}
_unsharded = {}


def checkpoint(workdir, name):
    if name not in _checkpoints:
        directory = os.path.join(workdir, name)
        gen_hf_checkpoint.generate(directory, **MODELS[name])
        _checkpoints[name] = directory
    return _checkpoints[name]


def language_model_run(command, workdir, tag):
    """Prompt logits, decode-step logits and generated tokens of a run."""
    logits = os.path.join(workdir, f"{tag}-logits.npy")
    steps = os.path.join(workdir, f"{tag}-steps.npy")
    out = run(command + ["--tokens", ",".join(map(str, PROMPT)),
                         "--logits-out", logits, "--generate", str(GENERATE),
                         "--generate-logits-out", steps])
    tokens = [int(t) for t in out.strip().split(",")]
    return np.load(logits), np.load(steps), tokens


def unsharded(workdir, name):
    if name not in _unsharded:
        directory = checkpoint(workdir, name)
        library = os.path.join(workdir, f"{name}.so")
        # A sharded layer keeps its shared expert dense on every rank
        # (moe-fuse-shared-expert leaves sharded layers alone), so the
        # unsharded program it equals bit for bit is the one without that
        # fusion.
        run([MOE_COMPILE, directory, "-o", library,
             "--fuse-shared-expert=false"])
        _unsharded[name] = language_model_run([MOE_RUN, library], workdir,
                                              f"{name}-ep1")
    return _unsharded[name]


def assert_bitwise(ours, expected, what):
    logits, steps, tokens = ours
    ref_logits, ref_steps, ref_tokens = expected
    assert logits.dtype == ref_logits.dtype and logits.shape == ref_logits.shape
    diff = float(np.abs(logits - ref_logits).max())
    assert np.array_equal(logits, ref_logits), \
        f"{what}: prompt logits differ from the unsharded run (max {diff:g})"
    assert np.array_equal(steps, ref_steps), \
        f"{what}: decode logits differ from the unsharded run"
    assert tokens == ref_tokens, (what, tokens, ref_tokens)


def sharded_library(workdir, name, ranks, placement):
    tag = f"{name}-ep{ranks}-" + "-".join(
        os.path.basename(p.strip("-")) for p in placement)
    library = os.path.join(workdir, tag + ".so")
    if not os.path.exists(library):
        run([MOE_COMPILE, checkpoint(workdir, name), "-o", library,
             "--ep", str(ranks)] + placement)
    return tag, library


@pytest.mark.parametrize("name,ranks,placement", LOCAL_CASES)
def test_local_bitwise(workdir, name, ranks, placement):
    expected = unsharded(workdir, name)
    tag, library = sharded_library(workdir, name, ranks, placement)
    ours = language_model_run(
        [MOE_RUN, library, "--ep", str(ranks), "--backend", "local"], workdir,
        tag + "-local")
    assert_bitwise(ours, expected, tag)


@pytest.mark.skipif(not MPIRUN, reason="the MPI backend was not built")
@pytest.mark.parametrize("name,ranks,placement", MPI_CASES)
def test_mpi_bitwise(workdir, name, ranks, placement):
    expected = unsharded(workdir, name)
    tag, library = sharded_library(workdir, name, ranks, placement)
    ours = language_model_run(
        MPIRUN + ["-np", str(ranks), MOE_RUN, library, "--ep", str(ranks),
                  "--backend", "mpi"], workdir, tag + "-mpi")
    assert_bitwise(ours, expected, tag + " (MPI)")


def test_jit_checkpoint_bitwise(workdir):
    """moe-run --hf DIR --ep N shards the imported model itself."""
    expected = unsharded(workdir, "qwen3_moe")
    ours = language_model_run(
        [MOE_RUN, "--hf", checkpoint(workdir, "qwen3_moe"), "--ep", "2",
         "--placement", "round-robin"], workdir, "qwen3-jit-ep2")
    assert_bitwise(ours, expected, "qwen3_moe JIT --ep 2")


def test_sharded_against_reference(workdir):
    """The sharded model against the independent PyTorch reference."""
    name = "deepseek_v3"
    tag, library = sharded_library(workdir, name, 4,
                                   ["--placement", "balanced", "--redundant",
                                    "4"])
    logits, _, tokens = language_model_run(
        [MOE_RUN, library, "--ep", "4"], workdir, tag + "-ref")
    semantics = hf_model_reference.Semantics(bf16_dot_products=HOST_BF16)
    model = hf_model_reference.load(checkpoint(workdir, name), semantics)
    ref = hf_model_reference.forward(model, PROMPT).detach().numpy()
    err = float(np.abs(logits - ref).max()) / float(np.abs(ref).max())
    print(f"{tag}: max error {err:.3g} of max|logit|")
    assert err <= 1e-4, f"{tag}: max error {err:.3g} of max|logit|"
    assert tokens == list(hf_model_reference.generate(model, PROMPT, GENERATE))


def test_misuse_errors(workdir):
    name = "mixtral"
    _, library = sharded_library(workdir, name, 2, [])
    tokens = ["--tokens", "1,2,3", "--generate", "1"]
    err = fails([MOE_RUN, library] + tokens)
    assert "--ep 2" in err and err.count("\n") == 1, err
    err = fails([MOE_RUN, library, "--ep", "4"] + tokens)
    assert "--ep 2" in err and err.count("\n") == 1, err
    err = fails([MOE_RUN, library, "--ep", "2", "--backend", "nccl"] + tokens)
    assert "nccl" in err and err.count("\n") == 1, err
    err = fails([MOE_RUN, library, "--ep", "2", "--placement",
                 "round-robin"] + tokens)
    assert "placement" in err and err.count("\n") == 1, err
    # Six experts cannot fill eight ranks; 6 + 1 replicas do not split
    # evenly over 2.
    directory = checkpoint(workdir, name)
    out = os.path.join(workdir, "never.so")
    err = fails([MOE_COMPILE, directory, "-o", out, "--ep", "8"])
    assert "cannot place the 6 experts of MoE layer 0 on 8 ranks" in err, err
    err = fails([MOE_COMPILE, directory, "-o", out, "--ep", "2",
                 "--placement", "balanced", "--redundant", "1"])
    assert "do not split evenly" in err, err
    assert not os.path.exists(out)


@pytest.mark.skipif(not MPIRUN, reason="the MPI backend was not built")
def test_mpi_rank_that_never_starts(workdir):
    """A rank that dies before joining ends the whole job with an error
    within a bounded time, never a hang."""
    _, library = sharded_library(workdir, "mixtral", 2, [])
    script = ('if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exit 3; fi; exec "$@"')
    proc = subprocess.run(
        MPIRUN + ["-np", "2", "sh", "-c", script, "sh", MOE_RUN, library,
                  "--ep", "2", "--backend", "mpi", "--tokens", "1,2,3",
                  "--generate", "2"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stdout.strip() == "", proc.stdout


def test_record_routing(workdir):
    """moe-run --record-routing writes the experts every router chose: the
    prompt's choices equal the PyTorch reference's, the profile feeds
    moe-plan and the balanced placement (bitwise again), and a library
    compiled with --expose-routing records the same profile."""
    import json
    name = "mixtral"
    directory = checkpoint(workdir, name)
    expected = unsharded(workdir, name)  # also compiles mixtral.so
    profile = os.path.join(workdir, "routing.json")
    language_model_run([MOE_RUN, "--hf", directory, "--record-routing",
                        profile], workdir, "record")
    with open(profile) as f:
        recorded = json.load(f)
    model = hf_model_reference.load(directory)
    cfg = model.cfg
    assert recorded["format"] == "moe-mlir-routing-profile"
    assert recorded["num_experts"] == 6 and recorded["top_k"] == 2
    # Every run: the prompt (--logits-out), then the prompt again and one
    # decode step per generated token but the last (--generate).
    assert recorded["tokens"] == 2 * len(PROMPT) + GENERATE - 1
    assert len(recorded["layers"]) == cfg.num_layers
    trace = {}
    hf_model_reference.forward(model, PROMPT, trace=trace)
    for layer in recorded["layers"]:
        l = layer["layer"]
        ids = np.array(layer["assignments"]).reshape(-1, 2)
        ref = trace[f"layer{l}.topk_indices"].numpy()
        assert np.array_equal(ids[:len(PROMPT)], ref), (l, ids, ref)
        assert layer["expert_counts"] == np.bincount(
            ids.reshape(-1), minlength=6).tolist()

    # The library route: the same profile.
    library = os.path.join(workdir, "mixtral-routing.so")
    run([MOE_COMPILE, directory, "-o", library, "--expose-routing"])
    again = os.path.join(workdir, "routing-aot.json")
    language_model_run([MOE_RUN, library, "--record-routing", again],
                       workdir, "record-aot")
    with open(again) as f:
        assert json.load(f) == recorded
    err = fails([MOE_RUN, os.path.join(workdir, "mixtral.so"), "--tokens",
                 "1,2", "--generate", "1", "--record-routing", again])
    assert "--expose-routing" in err, err

    # The planner reads it; the balanced placement uses it.
    plan = run([os.path.join(os.path.dirname(MOE_RUN), "moe-plan"),
                "--profile", profile, "--ep", "2", "--placement", "balanced",
                "--redundant", "2"])
    assert "max/mean" in plan and "6 experts, top-2" in plan, plan
    tag, balanced = sharded_library(
        workdir, name, 2, ["--placement", "balanced", "--redundant", "2",
                           "--routing-profile", profile])
    ours = language_model_run([MOE_RUN, balanced, "--ep", "2"], workdir,
                              tag + "-profiled")
    assert_bitwise(ours, expected, tag + " (profiled)")


@pytest.mark.parametrize("kind", ["moe", "qmoe"])
def test_onnx_bitwise(workdir, kind):
    """ONNX Runtime's MoE ops: float weights are initializers [E, ...] bound
    row-wise per rank; QMoE's dequantized weights are computed in the
    model, so every rank dequantizes all experts and keeps its slots
    (moe.ep_slots). Bitwise equal to the unsharded run, at EP 2 and 3."""
    pytest.importorskip("onnx")
    sys.path.insert(0, os.path.join(HERE, "onnx"))
    import moe_models as M
    if kind == "moe":
        spec = M.MoESpec(activation="swiglu", swiglu_fusion=1, E=6,
                         shape=(2, 5))
        x, w = M.make_case(spec, 5)
    else:
        spec = M.MoESpec(activation="silu", E=5, bits=8, shape=(7,))
        x, w = M.make_qmoe_case(spec, 5)
    model = os.path.join(workdir, f"{kind}.onnx")
    M.build_model(spec, w, model)
    x_path = os.path.join(workdir, f"{kind}-x.npy")
    np.save(x_path, x)
    outs = []
    for ranks in (1, 2, 3):
        out_dir = os.path.join(workdir, f"{kind}-ep{ranks}")
        os.makedirs(out_dir, exist_ok=True)
        run([MOE_RUN, "--onnx", model, f"--input={spec.input_name}={x_path}",
             "--output-dir", out_dir]
            + (["--ep", str(ranks)] if ranks > 1 else []))
        outs.append(np.load(os.path.join(out_dir, f"{spec.output_name}.npy")))
    assert outs[0].shape == x.shape
    for ranks, out in zip((2, 3), outs[1:]):
        assert np.array_equal(out, outs[0]), f"{kind} EP {ranks}"
