#!/usr/bin/env python3
"""Benchmark (not a test): whole MoE language models compiled by moe-compile
and run by moe-run (prefill of a prompt, then greedy decoding with the KV
cache) against PyTorch running the same checkpoint the Hugging Face
transformers way (bench/hf_torch_model.py: eager attention, DynamicCache,
the sparse-MoE expert loop), same machine, same thread count, same run.

    /usr/bin/python3 bench/whole_model.py [--build build]
        [--models mixtral,deepseek_v3] [--prompt 128] [--generate 32]
        [--rounds 3] [--threads 2] [--dtype float32|bfloat16]
        [--configs all,none,...] [--set [MODEL:]KEY=JSON] [--keep DIR]

Checkpoints are random ones from scripts/gen_hf_checkpoint.py, scaled by the
MODELS table below (Mixtral-style and DeepSeek-V3-style by default; --set
overrides a config field, for one model type with a MODEL: prefix).  Each
moe-mlir configuration of the CONFIGS table (a set of moe-optimize options)
is compiled once per model; the PyTorch peer is loaded once per model.
Every round runs each configuration's moe-run and the PyTorch generation one
after the other, so that slow phases of a shared machine hit all of them;
the tables give medians over the rounds (of times, and of the per-round
ratios).  Prefill time is the prompt's forward pass (which yields the first
token); decode tokens/s counts the N - 1 steps after it, as moe-run reports.
"Contribution" of a configuration that leaves a pass out is (tokens/s with
every pass) / (tokens/s without it).  In float32 the generated tokens of
every configuration are compared with PyTorch's (a warning when they
differ).

The defaults (2 models, 3-4 configurations, prompt 128, 32 tokens, 3 rounds,
float32) take about 4 minutes on an idle 2-core machine, checkpoint
generation included; a busy machine can take several times longer.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GENERATOR = os.path.join(ROOT, "scripts", "gen_hf_checkpoint.py")

MLA_MODELS = ("deepseek_v2", "deepseek_v3")

# moe-mlir configurations: (name, alternative moe-compile flag lists, model
# types it applies to or None for all).  "all" is the default pipeline,
# "none" skips moe-optimize, the others leave one pass out.  The flag lists
# are tried in order until one is known to moe-compile; a configuration none
# of whose flag lists compiles is skipped with a note.
CONFIGS = [
    ("all", [[]], None),
    ("none", [["--optimize=false"]], None),
    ("no-weight-absorption", [["--weight-absorption=naive"]], MLA_MODELS),
    ("no-fuse-gate-up", [["--fuse-gate-up=false"]], None),
    ("no-fuse-shared-expert", [["--fuse-shared-expert=false"]],
     ("deepseek_v2", "deepseek_v3", "qwen2_moe")),
    ("no-fuse-dispatch-combine", [["--fuse-dispatch-combine=false"]], None),
]

# Config fields set on the generator's tiny preset, per model type, to scale
# the models to a small CPU (--set overrides them).
MODELS = {
    "mixtral": {
        "hidden_size": 1024, "intermediate_size": 2816, "num_local_experts": 8,
        "num_experts_per_tok": 2, "num_attention_heads": 16, "num_key_value_heads": 4,
        "num_hidden_layers": 4, "vocab_size": 32000, "max_position_embeddings": 4096,
    },
    "deepseek_v3": {
        "hidden_size": 512, "intermediate_size": 1536, "num_attention_heads": 16,
        "num_key_value_heads": 16, "q_lora_rank": 192, "kv_lora_rank": 256,
        "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "moe_intermediate_size": 256, "n_routed_experts": 16, "n_group": 4, "topk_group": 2,
        "num_experts_per_tok": 4, "n_shared_experts": 1, "first_k_dense_replace": 1,
        "num_hidden_layers": 4, "vocab_size": 16000, "num_nextn_predict_layers": 0,
        "max_position_embeddings": 4096,
    },
    "deepseek_v2": {
        "hidden_size": 512, "intermediate_size": 1536, "num_attention_heads": 16,
        "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 256,
        "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "moe_intermediate_size": 256, "n_routed_experts": 16, "n_shared_experts": 2,
        "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1,
        "num_hidden_layers": 4, "vocab_size": 16000, "max_position_embeddings": 4096,
    },
    "qwen2_moe": {
        "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 704,
        "shared_expert_intermediate_size": 2816, "num_experts": 16, "num_experts_per_tok": 4,
        "num_attention_heads": 16, "num_key_value_heads": 16, "mlp_only_layers": [],
        "num_hidden_layers": 4, "vocab_size": 32000, "max_position_embeddings": 4096,
    },
    "qwen3_moe": {
        "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 384,
        "num_experts": 32, "num_experts_per_tok": 8, "num_attention_heads": 16,
        "num_key_value_heads": 4, "head_dim": 64, "decoder_sparse_step": 1,
        "num_hidden_layers": 4, "vocab_size": 32000, "max_position_embeddings": 4096,
    },
}

RUN_LINE = re.compile(r"moe-run: prefill (\d+) tokens ([0-9.]+) ms; decode (\d+) tokens "
                      r"([0-9.]+) ms")


def log(text):
    print(text, file=sys.stderr, flush=True)


def shell(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def wait_for(path, seconds=180):
    """The binary may be briefly missing while it is rebuilt."""
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"whole_model: {path} not found")
        log(f"  waiting for {path} ...")
        time.sleep(5)


def run_tool(cmd, retries=3):
    """subprocess.run that retries when the binary is missing or was being
    replaced (exec failure); returns the CompletedProcess."""
    for attempt in range(retries):
        wait_for(cmd[0])
        try:
            return subprocess.run(cmd, capture_output=True, text=True)
        except OSError as err:   # e.g. "Text file busy" during a rebuild
            if attempt + 1 == retries:
                raise
            log(f"  {os.path.basename(cmd[0])}: {err}; retrying")
            time.sleep(5)


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------


def machine_description(threads):
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16")
                         if re.search(rf"\b{f}\b", text))
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} hardware threads ({flags}); {threads} thread(s) used"


def machine_limits(dtype):
    """(f32 sgemm GFLOP/s, memory read GB/s, GB/s of weights of a one-row
    F.linear in `dtype`), with torch's current thread count: the context of
    the PyTorch figures."""
    import torch
    import torch.nn.functional as F
    best = lambda fn, n: min(_timed(fn) for _ in range(n))  # noqa: E731
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    gflops = 2 * 1024 ** 3 / best(lambda: a @ b, 5) / 1e9
    big = torch.ones(64 * 1024 * 1024)
    gbs = big.numel() * 4 / best(big.sum, 5) / 1e9
    dtype = getattr(torch, dtype)
    w, x = torch.randn(4096, 2048).to(dtype), torch.randn(1, 1, 2048).to(dtype)
    F.linear(x, w)
    linear = w.numel() * w.element_size() / best(lambda: F.linear(x, w), 10) / 1e9
    return gflops, gbs, linear


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Checkpoints, compiles, runs
# ---------------------------------------------------------------------------


def parse_sets(texts, models):
    """{model type: {key: value}} from --set [MODEL:]KEY=JSON."""
    overrides = {m: {} for m in models}
    for text in texts:
        head, eq, raw = text.partition("=")
        target, _, key = head.rpartition(":")
        if not eq or not key:
            sys.exit(f"whole_model: --set {text!r}: expected [MODEL:]KEY=JSON")
        if target and target not in MODELS:
            sys.exit(f"whole_model: --set {text!r}: unknown model type {target!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as err:
            sys.exit(f"whole_model: --set {text!r}: value is not JSON ({err})")
        for model in models:
            if not target or target == model:
                overrides[model][key] = value
    return overrides


def unknown_fields(model_type, fields):
    """Keys of `fields` that the generator's preset config does not have
    (likely typos: the generator would add them unused)."""
    sys.path.insert(0, os.path.dirname(GENERATOR))
    import gen_hf_checkpoint
    base = gen_hf_checkpoint.build_config(model_type)
    return [k for k in fields if k.split(".")[0] not in base]


def generator_command(model_type, out, dtype, fields, seed):
    cmd = [sys.executable, GENERATOR, "--model-type", model_type, "--out", out,
           "--dtype", dtype, "--seed", str(seed)]
    for key, value in fields.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def make_checkpoint(model_type, work, dtype, fields, seed, commands):
    out = os.path.join(work, f"{model_type}-{dtype}")
    cmd = generator_command(model_type, out, dtype, fields, seed)
    commands.append(shell(cmd))
    stamp_path = out + ".gen.json"
    stamp = json.dumps(cmd[1:])
    if os.path.exists(os.path.join(out, "config.json")) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if f.read() == stamp:
                log(f"  reusing checkpoint {out}")
                return out
    shutil.rmtree(out, ignore_errors=True)
    log(f"  generating checkpoint {out}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"whole_model: checkpoint generation failed:\n{proc.stderr.strip()}")
    with open(stamp_path, "w") as f:
        f.write(stamp)
    return out


def compile_config(build, checkpoint, lib, alternatives, commands):
    """Compiles with the first flag list moe-compile knows: (seconds, flags,
    None) or (None, None, reason)."""
    reason = None
    for flags in alternatives:
        cmd = [os.path.join(build, "bin", "moe-compile"), checkpoint, *flags, "-o", lib]
        if os.path.exists(lib):
            os.remove(lib)
        t0 = time.perf_counter()
        proc = run_tool(cmd)
        seconds = time.perf_counter() - t0
        if proc.returncode == 0 and os.path.exists(lib):
            commands.append(shell(cmd))
            return seconds, flags, None
        text = (proc.stderr or proc.stdout).strip()
        unknown = re.search(r"Unknown command line argument '([^']*)'", text)
        if unknown:
            reason = f"moe-compile does not know {unknown.group(1)}"
            continue
        lines = text.splitlines()
        commands.append(shell(cmd) + "   # failed")
        return None, None, (f"moe-compile failed (status {proc.returncode}): "
                            + (lines[-1] if lines else "no output, no library written"))
    return None, None, reason


def run_moe(build, lib, checkpoint, prompt, n, threads):
    """(tokens, prefill ms, decode steps, decode ms) or raises RuntimeError."""
    cmd = [os.path.join(build, "bin", "moe-run"), lib, "--weights", checkpoint,
           "--tokens", ",".join(map(str, prompt)), "--generate", str(n),
           "--num-threads", str(threads), "--repeat", "1"]
    proc = run_tool(cmd)
    match = RUN_LINE.search(proc.stderr)
    if proc.returncode or not match:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"moe-run failed (status {proc.returncode}): "
                           + (lines[-1] if lines else "no output"))
    tokens = [int(t) for t in proc.stdout.strip().split(",") if t.strip()]
    return tokens, float(match.group(2)), int(match.group(3)), float(match.group(4))


def run_command_text(build, lib, checkpoint, n, threads):
    return shell([os.path.join(build, "bin", "moe-run"), lib, "--weights", checkpoint]) + \
        f" --tokens \"$PROMPT\" --generate {n} --num-threads {threads} --repeat 1"


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def fmt(value, spec, suffix=""):
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a and b else None


def report(model_type, args, results, torch_runs, compile_s, used_flags, configs):
    """Markdown table of one model.  results: {config: [run or None per round]}
    with run = (tokens, prefill ms, decode steps, decode ms); torch_runs:
    [(tokens, prefill s, decode s)]."""
    P, N = args.prompt, args.generate

    def rates(prefill_ms, steps, decode_ms):
        return P * 1e3 / prefill_ms, (steps * 1e3 / decode_ms if steps and decode_ms else None)

    torch_rates = [rates(p * 1e3, N - 1, d * 1e3) for _, p, d in torch_runs]
    print(f"### {model_type} ({args.dtype}, prompt {P} tokens, generate {N}, "
          f"{args.threads} thread(s), {len(torch_runs)} round(s))")
    print()
    print(f"| config | moe-compile flags | compile s | prefill ms ({P} tok) | prefill tok/s "
          f"| decode tok/s "
          f"| prefill vs PyTorch | decode vs PyTorch | contribution (prefill) "
          f"| contribution (decode) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    all_runs = results.get("all")
    for name, _, _ in configs:
        if name not in results:
            continue
        runs = results[name]
        r = [rates(run[1], run[2], run[3]) if run else None for run in runs]
        prefill_ms = median_or_none([run[1] if run else None for run in runs])
        pre = median_or_none([x[0] if x else None for x in r])
        dec = median_or_none([x[1] if x else None for x in r])
        vs_pre = median_or_none([ratio(x[0], t[0]) if x else None
                                 for x, t in zip(r, torch_rates)])
        vs_dec = median_or_none([ratio(x[1], t[1]) if x else None
                                 for x, t in zip(r, torch_rates)])
        c_pre = c_dec = None
        if name != "all" and all_runs:
            a = [rates(run[1], run[2], run[3]) if run else None for run in all_runs]
            c_pre = median_or_none([ratio(x[0], y[0]) if x and y else None
                                    for x, y in zip(a, r)])
            c_dec = median_or_none([ratio(x[1], y[1]) if x and y else None
                                    for x, y in zip(a, r)])
        contribution = ("| |" if name == "all" else
                        f"| {fmt(c_pre, '.2f', 'x')} | {fmt(c_dec, '.2f', 'x')} |")
        flags = " ".join(used_flags.get(name) or []) or "(default)"
        print(f"| moe-mlir {name} | `{flags}` | {fmt(compile_s.get(name), '.1f')} "
              f"| {fmt(prefill_ms, '.1f')} "
              f"| {fmt(pre, '.1f')} | {fmt(dec, '.2f')} | {fmt(vs_pre, '.2f', 'x')} "
              f"| {fmt(vs_dec, '.2f', 'x')} {contribution}")
    t_pre_ms = statistics.median(p * 1e3 for _, p, _ in torch_runs)
    t_pre = statistics.median(x[0] for x in torch_rates)
    t_dec = median_or_none([x[1] for x in torch_rates])
    print(f"| PyTorch HF-style ({args.dtype}) | | - | {t_pre_ms:.1f} | {t_pre:.1f} "
          f"| {fmt(t_dec, '.2f')} | 1.00x | 1.00x | | |")
    print()


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default="mixtral,deepseek_v3",
                    help=f"comma-separated model types ({', '.join(MODELS)})")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    ap.add_argument("--generate", type=int, default=32, help="tokens generated greedily")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over them")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                    help="checkpoint dtype (PyTorch computes in it)")
    ap.add_argument("--configs", default=",".join(c[0] for c in CONFIGS),
                    help="comma-separated moe-mlir configurations (default: all of them)")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    metavar="[MODEL:]KEY=JSON", help="override a model config field")
    ap.add_argument("--seed", type=int, default=0, help="checkpoint and prompt seed")
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR and keep the checkpoints and libraries (a checkpoint "
                         "generated with the same arguments is reused)")
    args = ap.parse_args()
    if args.prompt < 1 or args.generate < 1 or args.rounds < 1 or args.threads < 1:
        ap.error("--prompt, --generate, --rounds and --threads must be >= 1")
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model type {m!r} (known: {', '.join(MODELS)})")
    wanted = [c for c in args.configs.split(",") if c]
    known = {c[0] for c in CONFIGS}
    for c in wanted:
        if c not in known:
            ap.error(f"unknown configuration {c!r} (known: {', '.join(c[0] for c in CONFIGS)})")
    configs = [c for c in CONFIGS if c[0] in wanted]
    overrides = parse_sets(args.sets, models)
    build = os.path.abspath(args.build)

    # PyTorch's thread pools read these when the libraries load.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    import hf_torch_model
    torch.set_num_threads(args.threads)

    if args.keep:
        work = os.path.abspath(args.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="moe-whole-model-")
    commands = []
    notes = []
    log(f"whole_model: working in {work}")
    limits = machine_limits(args.dtype)
    try:
        tables = []
        for model_type in models:
            log(f"{model_type}:")
            fields = dict(MODELS[model_type])
            fields.update(overrides[model_type])
            for key in unknown_fields(model_type, fields):
                notes.append(f"{model_type}: config field {key!r} is not in the generator's "
                             "preset (added as is)")
            commands.append(f"# {model_type}")
            checkpoint = make_checkpoint(model_type, work, args.dtype, fields, args.seed,
                                         commands)
            with open(os.path.join(checkpoint, "config.json")) as f:
                vocab = json.load(f)["vocab_size"]
            prompt = np.random.default_rng(args.seed).integers(0, vocab, args.prompt).tolist()
            commands.append(f"PROMPT={','.join(map(str, prompt))}")
            compile_s, skipped, libs, used_flags = {}, {}, {}, {}
            for name, alternatives, applies in configs:
                if applies is not None and model_type not in applies:
                    skipped[name] = f"does not apply to {model_type}"
                    continue
                lib = os.path.join(work, f"{model_type}-{args.dtype}-{name}.so")
                log(f"  compiling {name}")
                seconds, flags, reason = compile_config(build, checkpoint, lib, alternatives,
                                                        commands)
                if reason:
                    skipped[name] = reason
                    notes.append(f"{model_type}: configuration {name!r} skipped: {reason}")
                    log(f"  skipped {name}: {reason}")
                    continue
                compile_s[name], libs[name], used_flags[name] = seconds, lib, flags
                commands.append(run_command_text(build, lib, checkpoint, args.generate,
                                                 args.threads))
            log("  loading the PyTorch model")
            peer = hf_torch_model.load(checkpoint, threads=args.threads)
            commands.append(f"{shell([sys.executable, os.path.join(HERE, 'hf_torch_model.py')])}"
                            f" --model {shlex.quote(checkpoint)} --tokens \"$PROMPT\" "
                            f"--generate {args.generate} --threads {args.threads}")
            # Warm-up with the same prompt: oneDNN (bf16) builds its kernels
            # per shape on first use.
            hf_torch_model.generate(peer, prompt, min(2, args.generate))
            results = {name: [] for name in libs}
            torch_runs = []
            mismatched = set()
            for r in range(args.rounds):
                for name, lib in libs.items():
                    try:
                        run = run_moe(build, lib, checkpoint, prompt, args.generate,
                                      args.threads)
                    except RuntimeError as err:
                        notes.append(f"{model_type}: {name}, round {r + 1}: {err}")
                        log(f"  round {r + 1} {name}: {err}")
                        run = None
                    results[name].append(run)
                    if run:
                        log(f"  round {r + 1} moe-mlir {name}: prefill {run[1]:.1f} ms, "
                            f"decode {run[3]:.1f} ms")
                tokens, pre_s, dec_s = hf_torch_model.generate(peer, prompt, args.generate)
                torch_runs.append((tokens, pre_s, dec_s))
                log(f"  round {r + 1} PyTorch: prefill {pre_s * 1e3:.1f} ms, decode "
                    f"{dec_s * 1e3:.1f} ms")
                for name in libs:
                    run = results[name][-1]
                    if run and run[0] != tokens and name not in mismatched:
                        mismatched.add(name)
                        first = next((i for i, (a, b) in enumerate(zip(run[0], tokens))
                                      if a != b), min(len(run[0]), len(tokens)))
                        text = (f"{model_type}: moe-mlir {name} generated {run[0]}, PyTorch "
                                f"{tokens} (first difference at token {first})")
                        if args.dtype == "float32":
                            notes.append("WARNING: " + text)
                            log("  WARNING: " + text)
                        else:
                            notes.append(f"{text}; expected in bfloat16 (different rounding)")
            if args.dtype == "float32" and not mismatched and libs:
                notes.append(f"{model_type}: every configuration generated PyTorch's "
                             f"{args.generate} tokens")
            del peer
            for name, why in skipped.items():
                if why.startswith("does not apply"):
                    notes.append(f"{model_type}: configuration {name!r} not run ({why})")
            tables.append((model_type, results, torch_runs, compile_s, used_flags))

        print("## Whole-model benchmark: moe-mlir vs PyTorch (HF-style, KV cache)")
        print()
        print(f"Machine: {machine_description(args.threads)}")
        print(f"PyTorch {torch.__version__} ({args.threads} threads): f32 sgemm "
              f"{limits[0]:.0f} GFLOP/s, memory read {limits[1]:.1f} GB/s, one-row {args.dtype} "
              f"F.linear (a decode step's projection) {limits[2]:.1f} GB/s of weights")
        print()
        print("Both sides are warm: moe-run (--repeat 1) generates once to warm up (its "
              "weights are memory-mapped and touched then) and times the second "
              "generation; the PyTorch model is loaded once and warmed up with a 2-token "
              "generation from the same prompt.  Both compute the LM head on the prompt's "
              "last position only (HF's generate; moe-run through logits_to_keep).  "
              "Medians over the rounds; ratios > 1 mean moe-mlir is faster.")
        print()
        for model_type, results, torch_runs, compile_s, used_flags in tables:
            report(model_type, args, results, torch_runs, compile_s, used_flags, configs)
        if notes:
            print("Notes:")
            for note in notes:
                print(f"* {note}")
            print()
        print("Commands:")
        print()
        print("```")
        for cmd in commands:
            print(cmd)
        print("```")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
