# Inputs of fake-ep-model.c and the check of its output.
#   fake_ep_data.py write DIR   x.npy [9, 4], slots.npy [9, 2] (some -1),
#                               experts.safetensors (experts.E.scale, E < 3),
#                               two-experts.safetensors (E < 2 only)
#   fake_ep_data.py check DIR   DIR/out/y.npy against NumPy
import json
import struct
import sys

import numpy as np


def inputs():
    x = (np.arange(36, dtype=np.float32).reshape(9, 4) + 1) / 4
    slots = np.array([[0, 2], [1, -1], [2, 2], [-1, -1], [0, 1], [2, 0],
                      [1, 2], [-1, 0], [2, 1]], dtype=np.int32)
    scales = [np.array([e + 1, -(e + 2), 0.5 * (e + 1), 10 + e],
                       dtype=np.float32) for e in range(3)]
    return x, slots, scales


def write_safetensors(path, scales):
    header, data = {}, b""
    for e, s in enumerate(scales):
        header["experts.%d.scale" % e] = {
            "dtype": "F32", "shape": [4],
            "data_offsets": [len(data), len(data) + s.nbytes]}
        data += s.tobytes()
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def write(d):
    x, slots, scales = inputs()
    np.save(d + "/x.npy", x)
    np.save(d + "/slots.npy", slots)
    write_safetensors(d + "/experts.safetensors", scales)
    write_safetensors(d + "/two-experts.safetensors", scales[:2])


def check(d):
    x, slots, scales = inputs()
    want = np.zeros_like(x)
    for t in range(x.shape[0]):
        for s in slots[t]:
            if s >= 0:
                want[t] += x[t] * scales[s]
    got = np.load(d + "/out/y.npy")
    assert got.shape == want.shape and (got == want).all(), (got, want)
    print("fake ep output ok")


{"write": write, "check": check}[sys.argv[1]](sys.argv[2])
