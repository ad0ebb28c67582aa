"""Writes a safetensors file by hand (the format: an 8-byte little-endian
header length, a JSON header, the raw data) for the moe-run --weights tests.
usage: write_safetensors.py OUT NAME=DTYPE:ROWSxCOLS[:fill] ..."""
import json
import struct
import sys

import numpy as np
import torch

out, specs = sys.argv[1], sys.argv[2:]
header, blobs, offset = {}, [], 0
for spec in specs:
    name, rest = spec.split("=")
    parts = rest.split(":")
    dtype, shape = parts[0], [int(d) for d in parts[1].split("x")]
    values = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape) / 8
    if len(parts) > 2:
        values = torch.full(shape, float(parts[2]))
    t = values.to({"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[dtype])
    raw = t.view(torch.int16).numpy().tobytes() if dtype != "F32" else t.numpy().tobytes()
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
text = json.dumps(header).encode()
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
