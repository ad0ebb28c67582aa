"""Whole Hugging Face models, imported, compiled and run by moe-mlir, against
the independent PyTorch reference (reference/hf_model_reference.py, written
from the HF semantics, float32).

For each case a small random checkpoint in the real HF format is generated
(scripts/gen_hf_checkpoint.py) and:
  - the prompt's logits (moe-run --tokens ... --logits-out) must equal the
    reference's within a tolerance relative to max|logit| (1e-4 for f32;
    bf16/f16 checkpoints compute in f32 on the same rounded weights, so the
    same bound holds);
  - the greedy tokens (moe-run --generate, which decodes with the KV or
    latent cache) must equal the reference's (full recompute each step);
  - the logits each generated token came from (decode with cache) must
    equal a full recompute over prompt + generated tokens.

Tools come from MOE_RUN / MOE_COMPILE (set by the lit test)."""

import os
import re
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

PROMPT = [3, 17, 42, 7, 99, 1, 250, 64, 12, 5]
GENERATE = 6
TOLERANCE = 1e-4  # relative to max|logit|
# With bf16 dot products both sides round the projections' inputs to bf16,
# but from f32 values computed in a different order: a value within an f32
# rounding of a bf16 rounding boundary can land on either side, one bf16 ulp
# (2^-8 relative) in one input, which the following layers carry on.
BF16_DOT_TOLERANCE = 1e-3

CASES = {
    "mixtral": dict(model_type="mixtral"),
    "mixtral-sharded": dict(model_type="mixtral", shards=3),
    "mixtral-f16": dict(model_type="mixtral", dtype="float16"),
    "qwen2_moe": dict(model_type="qwen2_moe"),
    "qwen2_moe-bf16": dict(model_type="qwen2_moe", dtype="bfloat16"),
    "qwen3_moe": dict(model_type="qwen3_moe"),
    "qwen3_moe-tied": dict(model_type="qwen3_moe", tie_word_embeddings=True),
    "deepseek_v2": dict(model_type="deepseek_v2"),
    "deepseek_v2-group-limited": dict(
        model_type="deepseek_v2",
        sets=['topk_method="group_limited_greedy"', "n_group=2", "topk_group=1"]),
    "deepseek_v2-yarn-bf16": dict(model_type="deepseek_v2", yarn=True,
                                  dtype="bfloat16"),
    "deepseek_v3": dict(model_type="deepseek_v3"),
    "deepseek_v3-bf16": dict(model_type="deepseek_v3", dtype="bfloat16"),
    "deepseek_v3-yarn": dict(model_type="deepseek_v3", yarn=True),
    "deepseek_v3-no-q-lora": dict(model_type="deepseek_v3",
                                  sets=["q_lora_rank=null"]),
}


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    return proc.stdout


def make_checkpoint(directory, case):
    args = dict(case)
    sets = [gen_hf_checkpoint.parse_set(s) for s in args.pop("sets", [])]
    gen_hf_checkpoint.generate(directory, sets=sets, **args)


def reference(directory, tokens, generate=0, bf16_dot=False):
    semantics = hf_model_reference.Semantics(bf16_dot_products=bf16_dot)
    model = hf_model_reference.load(directory, semantics)
    logits = hf_model_reference.forward(model, tokens).detach().numpy()
    generated = (hf_model_reference.generate(model, tokens, generate)
                 if generate else [])
    return model, logits, generated


def check_model(model_arg, directory, tmp, bf16_dot=HOST_BF16):
    """`bf16_dot`: whether the tools use bf16 dot products (their default,
    --bf16-dot=auto, does on CPUs with AVX512-BF16); the reference then
    rounds at the same points."""
    logits_path = os.path.join(tmp, "logits.npy")
    steps_path = os.path.join(tmp, "steps.npy")
    out = run([MOE_RUN] + model_arg + [
        "--tokens", ",".join(map(str, PROMPT)), "--logits-out", logits_path,
        "--generate", str(GENERATE), "--generate-logits-out", steps_path])
    ours_tokens = [int(t) for t in out.strip().split(",")]
    ours = np.load(logits_path)

    model, ref, ref_tokens = reference(directory, PROMPT, GENERATE, bf16_dot)
    bf16_weights = any(getattr(t, "stored_dtype", None) == "BF16"
                       for t in model.tensors.values())
    tolerance = BF16_DOT_TOLERANCE if bf16_dot and bf16_weights else TOLERANCE
    assert ours.shape == ref.shape
    scale = float(np.abs(ref).max())
    err = float(np.abs(ours - ref).max()) / scale
    print(f"prompt logits: max error {err:.3g} of max|logit| (bound {tolerance:g})")
    assert err <= tolerance, f"prompt logits: max error {err:.3g} of max|logit|"
    assert ours_tokens == list(ref_tokens), (ours_tokens, ref_tokens)

    # Decode with the cache against a full recompute of the same sequence.
    steps = np.load(steps_path)
    full = hf_model_reference.forward(
        model, PROMPT + ours_tokens[:-1]).detach().numpy()
    expected = full[len(PROMPT) - 1:]
    assert steps.shape == expected.shape
    err = float(np.abs(steps - expected).max()) / float(np.abs(expected).max())
    print(f"decode logits: max error {err:.3g} of max|logit| (bound {tolerance:g})")
    assert err <= tolerance, f"decode logits: max error {err:.3g}"
    return err


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit(name):
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        check_model(["--hf", directory], directory, tmp)


@pytest.mark.parametrize("name", ["deepseek_v3", "qwen2_moe"])
def test_ahead_of_time(name):
    """moe-compile DIR -o model.so; moe-run model.so finds the weights
    through the path the library records."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        library = os.path.join(tmp, "model.so")
        run([MOE_COMPILE, directory, "-o", library])
        check_model([library], directory, tmp)


def rewrite_mixed_dtypes(directory):
    """Rewrites a single-file bf16 checkpoint the way some exporters leave
    them: norms and one expert's tensors in F32, everything else BF16, all
    in name order (so a layer's experts are not stored back to back)."""
    path = os.path.join(directory, "model.safetensors")
    tensors = hf_model_reference.read_safetensors(path)
    entries = []
    for name in sorted(tensors):
        values = tensors[name].numpy()
        wide = ("norm" in name or ".experts.1." in name
                or "e_score_correction_bias" in name)
        tag = "F32" if wide else "BF16"
        entries.append((name, tag, values.shape,
                        gen_hf_checkpoint.encode(values, tag)))
    gen_hf_checkpoint.write_safetensors(path, entries)


@pytest.mark.parametrize("model_type", ["qwen3_moe", "deepseek_v3"])
def test_mixed_dtypes(model_type):
    """Tensors of one op in different dtypes are converted when bound; the
    numbers are those of the stored values."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, dict(model_type=model_type,
                                        dtype="bfloat16"))
        rewrite_mixed_dtypes(directory)
        check_model(["--hf", directory, "--bf16-dot=off"], directory, tmp,
                    bf16_dot=False)


@pytest.mark.parametrize("name", ["qwen2_moe-bf16", "deepseek_v3-bf16"])
def test_bf16_exact_products(name):
    """--bf16-dot=off: bf16 weights times f32 activations, exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        check_model(["--hf", directory, "--bf16-dot=off"], directory, tmp,
                    bf16_dot=False)


def test_threads_bitwise_identical():
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES["deepseek_v3"])
        library = os.path.join(tmp, "model.so")
        run([MOE_COMPILE, directory, "-o", library])
        outs = []
        for threads in (1, 2):
            path = os.path.join(tmp, f"logits{threads}.npy")
            run([MOE_RUN, library, "--num-threads", str(threads), "--tokens",
                 ",".join(map(str, PROMPT)), "--logits-out", path])
            outs.append(np.load(path))
        assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("name", ["deepseek_v2", "deepseek_v3-bf16"])
@pytest.mark.parametrize("form", ["absorbed", "naive"])
def test_mla_weight_absorption(name, form):
    """Both forms of MLA everywhere (the default, cost, mixes them: naive
    for these prompts, absorbed for decode) against the reference; they
    differ from each other by f32 reassociation only."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        check_model(["--hf", directory, f"--weight-absorption={form}"],
                    directory, tmp)


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe-bf16", "deepseek_v3"])
def test_without_optimizations(name):
    """--optimize=false lowers the ops as the importer wrote them: the same
    model within the same bound of the reference."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        check_model(["--hf", directory, "--optimize=false"], directory, tmp)


def runs_with_switch(name, flag):
    """(tokens, prompt logits, cached decode steps' logits) of moe-run on
    case `name` with `--FLAG=true` and with `--FLAG=false`. Asserts that the
    pass named by the flag fused something when on (its `fused` statistic)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES[name])
        outs = []
        for value in ("true", "false"):
            logits = os.path.join(tmp, f"logits-{value}.npy")
            steps = os.path.join(tmp, f"steps-{value}.npy")
            cmd = [MOE_RUN, "--hf", directory, f"--{flag}={value}",
                   "--tokens", ",".join(map(str, PROMPT)),
                   "--logits-out", logits, "--generate", str(GENERATE),
                   "--generate-logits-out", steps, "--mlir-pass-statistics"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
            fused = re.search(rf"\(moe-{flag}\)\n\s+\(S\) (\d+) fused", proc.stderr)
            if value == "true":
                assert fused and int(fused.group(1)) > 0, proc.stderr
            else:
                assert not fused, proc.stderr
            outs.append((proc.stdout, np.load(logits), np.load(steps)))
        return outs


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe", "deepseek_v2"])
def test_gate_up_fusion_bitwise(name):
    """moe-fuse-gate-up changes no bit: every product keeps its summation
    order. Prompt logits and every cached decode step's logits are compared
    with the pass on (the default) and off."""
    fused, unfused = runs_with_switch(name, "fuse-gate-up")
    assert fused[0] == unfused[0]
    assert np.array_equal(fused[1], unfused[1])
    assert np.array_equal(fused[2], unfused[2])


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe", "qwen3_moe",
                                  "deepseek_v2", "deepseek_v3"])
def test_dispatch_combine_fusion_bitwise(name):
    """moe-fuse-dispatch-combine changes no bit: the experts read the
    tokens' rows in place and the combine runs in the down projection's
    epilogue, with every row computed by the same kernel and summed in the
    combine's slot order. Every model type (shared experts fused or not),
    prompt and every cached decode step, pass on (the default) and off."""
    fused, unfused = runs_with_switch(name, "fuse-dispatch-combine")
    assert fused[0] == unfused[0]
    assert np.array_equal(fused[1], unfused[1])
    assert np.array_equal(fused[2], unfused[2])


def test_generate_repeat():
    """--repeat N with --generate: the same tokens, timed as medians of N
    generations after a warm-up one."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "model")
        make_checkpoint(directory, CASES["qwen3_moe"])
        library = os.path.join(tmp, "model.so")
        run([MOE_COMPILE, "--hf", directory, "-o", library])
        base = [MOE_RUN, library, "--tokens", ",".join(map(str, PROMPT)),
                "--generate", str(GENERATE)]
        once = subprocess.run(base, capture_output=True, text=True)
        again = subprocess.run(base + ["--repeat", "2"], capture_output=True,
                               text=True)
        assert once.returncode == 0 and again.returncode == 0, again.stderr
        assert once.stdout == again.stdout
        assert "medians of 2 generations after a warm-up" in again.stderr
        assert "medians" not in once.stderr


@pytest.mark.parametrize("name,bitwise", [("deepseek_v3", True),
                                          ("deepseek_v3-yarn", True),
                                          ("qwen2_moe", False),
                                          ("deepseek_v2", False)])
def test_shared_expert_fusion(name, bitwise):
    """moe-fuse-shared-expert (on by default) against the pass off. With
    one shared slot (DeepSeek-V3's shared width equals the routed width) in
    f32 no bit changes: the shared output is added after the routed slots,
    as the model adds it. Qwen2-MoE's and DeepSeek-V2's shared FFNs are two
    routed widths wide here, so their sum over the intermediate features is
    split in two (f32 reassociation): within 1e-5 of max|logit|, the same
    tokens. Both are checked against the reference by test_jit."""
    fused, unfused = runs_with_switch(name, "fuse-shared-expert")
    assert fused[0] == unfused[0]
    for ours, theirs in ((fused[1], unfused[1]), (fused[2], unfused[2])):
        if bitwise:
            assert np.array_equal(ours, theirs)
        else:
            err = float(np.abs(ours - theirs).max())
            assert err <= 1e-5 * float(np.abs(theirs).max()), err
