"""Writes Hugging Face checkpoints that are broken in one way each, for
bad-input.test.

usage: make_bad_checkpoint.py OUT_ROOT [CASE ...]

Every CASE (all of them when none is named) becomes the directory
OUT_ROOT/CASE. The starting point is the tiny deepseek_v2 checkpoint of
scripts/gen_hf_checkpoint.py (float32, one model.safetensors), so that a
checkpoint that passes the checks would import; cases about the config alone
are written without weights (config.json is checked before the weights).
Everything is deterministic: the bytes depend only on the case.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 4))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_hf_checkpoint as gen  # noqa: E402

MODEL = "deepseek_v2"
# Tensors the cases break; both [64] float32 (256 bytes).
NORM_A = "model.layers.0.input_layernorm.weight"
NORM_B = "model.layers.0.post_attention_layernorm.weight"
# A [10, 64] router weight of the first MoE layer.
ROUTER = "model.layers.1.mlp.gate.weight"


def base_config(**sets):
    return gen.build_config(MODEL, sets=tuple(sets.items()))


def write_valid(out, config=None, tensors=None, shards=1):
    config = config if config is not None else base_config()
    tensors = tensors if tensors is not None else gen.random_tensors(config, 0)
    gen.write_checkpoint(out, config, tensors, shards=shards)
    return config


def write_config_only(out, config):
    gen.write_config(out, config)


# -- safetensors surgery ------------------------------------------------------


def read_safetensors(path):
    """(header dict in file order, data bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_raw_safetensors(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def edit_header(out, edit):
    path = os.path.join(out, "model.safetensors")
    header, data = read_safetensors(path)
    edit(header)
    write_raw_safetensors(path, header, data)


def write_with_entry(out, name, tag, shape, raw):
    """A valid checkpoint whose tensor `name` is stored as (tag, shape, raw)."""
    config = base_config()
    tensors = gen.random_tensors(config, 0)
    del tensors[name]
    entries = []
    for key in sorted(tensors):
        values, kind = tensors[key]
        t = gen.storage_tag(kind, "F32")
        entries.append((key, t, values.shape, gen.encode(values, t)))
    entries.append((name, tag, shape, raw))
    os.makedirs(out, exist_ok=True)
    gen.write_config(out, config)
    gen.write_safetensors(os.path.join(out, "model.safetensors"), entries)


# -- the cases ----------------------------------------------------------------


def truncated(out):
    """model.safetensors cut in the middle of its data section."""
    write_valid(out)
    path = os.path.join(out, "model.safetensors")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[:len(blob) // 2])


def header_past_end(out):
    """The 8-byte header length is larger than the rest of the file."""
    write_valid(out)
    path = os.path.join(out, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", size))


def offsets_out_of_range(out):
    """One tensor's data_offsets end 4 bytes past the data section."""
    write_valid(out)

    def edit(header):
        end = max(e["data_offsets"][1] for k, e in header.items() if k != "__metadata__")
        begin = header[NORM_A]["data_offsets"][0]
        header[NORM_A]["data_offsets"] = [begin, end + 4]

    edit_header(out, edit)


def overlapping_offsets(out):
    """NORM_B's data_offsets are NORM_A's (same size): the two overlap."""
    write_valid(out)

    def edit(header):
        header[NORM_B]["data_offsets"] = list(header[NORM_A]["data_offsets"])

    edit_header(out, edit)


def shape_vs_bytes(out):
    """NORM_A claims shape [65] over the 256 bytes of 64 float32 values."""
    write_valid(out)
    edit_header(out, lambda h: h[NORM_A].update(shape=[65]))


def dtype_vs_bytes(out):
    """NORM_A claims dtype BF16 over the 256 bytes of 64 float32 values."""
    write_valid(out)
    edit_header(out, lambda h: h[NORM_A].update(dtype="BF16"))


def missing_tensor(out):
    config = base_config()
    tensors = gen.random_tensors(config, 0)
    del tensors[NORM_B]
    write_valid(out, config, tensors)


def unexpected_tensor(out):
    config = base_config()
    tensors = gen.random_tensors(config, 0)
    tensors["model.layers.0.mlp.extra.weight"] = (np.zeros((4, 64), np.float32), gen.LINEAR)
    write_valid(out, config, tensors)


def wrong_shape(out):
    """The router has 11 rows; the config says 10 experts."""
    config = base_config()
    tensors = gen.random_tensors(config, 0)
    tensors[ROUTER] = (np.zeros((11, 64), np.float32), gen.ROUTER)
    write_valid(out, config, tensors)


def fp8_tensor(out):
    """The router stored as F8_E4M3 (one byte per element)."""
    write_with_entry(out, ROUTER, "F8_E4M3", (10, 64), bytes(10 * 64))


def int_tensor(out):
    """The router stored as I32 (a dtype that is not a float type)."""
    write_with_entry(out, ROUTER, "I32", (10, 64), bytes(4 * 10 * 64))


def quantized_config(out):
    """quantization_config (FP8, as DeepSeek-V3 publishes) with weights."""
    config = base_config(quantization_config={
        "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
        "weight_block_size": [128, 128]})
    write_valid(out, config, gen.random_tensors(config, 0))


def no_config(out):
    write_valid(out)
    os.remove(os.path.join(out, "config.json"))


def no_weights(out):
    write_config_only(out, base_config())


def missing_shard(out):
    """A sharded checkpoint whose second shard file is gone."""
    write_valid(out, shards=2)
    os.remove(os.path.join(out, "model-00002-of-00002.safetensors"))


def not_json_config(out):
    write_valid(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write('{"model_type": "deepseek_v2", "hidden_size": 64,,}\n')


def config_not_object(out):
    write_config_only(out, ["model_type", "deepseek_v2"])


def unknown_model_type(out):
    write_config_only(out, base_config(model_type="llama"))


def missing_hidden_size(out):
    config = base_config()
    del config["hidden_size"]
    write_config_only(out, config)


def hidden_size_string(out):
    write_config_only(out, base_config(hidden_size="64"))


def fractional_hidden_size(out):
    write_config_only(out, base_config(hidden_size=64.5))


def too_many_experts_per_tok(out):
    write_config_only(out, base_config(num_experts_per_tok=11))


def mixtral_too_many_experts_per_tok(out):
    """Mixtral's own field names (num_local_experts)."""
    write_config_only(out, gen.build_config("mixtral", sets=(("num_experts_per_tok", 7),)))


def qwen_heads_not_dividing(out):
    """qwen2_moe: num_key_value_heads 3 does not divide 4 attention heads."""
    write_config_only(out, gen.build_config("qwen2_moe", sets=(("num_key_value_heads", 3),)))


def n_group_not_dividing(out):
    """deepseek_v3: 12 routed experts in 5 groups."""
    write_config_only(out, gen.build_config("deepseek_v3", sets=(("n_group", 5),)))


def topk_group_too_large(out):
    write_config_only(out, gen.build_config("deepseek_v3", sets=(("topk_group", 5),)))


def negative_layers(out):
    write_config_only(out, base_config(num_hidden_layers=-1))


def odd_rope_dim(out):
    write_config_only(out, base_config(qk_rope_head_dim=7))


def unsupported_rope_scaling(out):
    write_config_only(out, base_config(rope_scaling={"type": "linear", "factor": 2.0}))


def unsupported_dtype(out):
    write_config_only(out, base_config(torch_dtype="float64"))


def valid(out):
    """A checkpoint that imports (for the moe-run --tokens cases)."""
    write_valid(out)


CASES = {f.__name__.replace("_", "-"): f for f in (
    truncated, header_past_end, offsets_out_of_range, overlapping_offsets,
    shape_vs_bytes, dtype_vs_bytes, missing_tensor, unexpected_tensor,
    wrong_shape, fp8_tensor, int_tensor, quantized_config, no_config,
    no_weights, missing_shard, not_json_config, config_not_object,
    unknown_model_type, missing_hidden_size, hidden_size_string,
    fractional_hidden_size, too_many_experts_per_tok,
    mixtral_too_many_experts_per_tok, qwen_heads_not_dividing,
    n_group_not_dividing, topk_group_too_large, negative_layers,
    odd_rope_dim, unsupported_rope_scaling, unsupported_dtype, valid)}


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        print("cases: " + " ".join(CASES), file=sys.stderr)
        return 2
    root, names = argv[0], argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"make_bad_checkpoint: unknown case(s) {unknown}; known: {list(CASES)}",
              file=sys.stderr)
        return 2
    for name in names:
        out = os.path.join(root, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        CASES[name](out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
