"""Writes a small com.microsoft.MoE model for the FileCheck tests:
make_moe_model.py OUT.onnx [--activation A] [--fusion F] [--fc3] [--bias]
[--limit L] [--alpha A] [--beta B] [--k K] [--normalize] [--batched]
[--old-layout] [--quantized BITS] [--block-size N]."""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

H, I, E = 16, 24, 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--activation", default="silu")
    ap.add_argument("--fusion", type=int, default=None)
    ap.add_argument("--fc3", action="store_true")
    ap.add_argument("--bias", action="store_true")
    ap.add_argument("--limit", type=float)
    ap.add_argument("--alpha", type=float)
    ap.add_argument("--beta", type=float)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--normalize", action="store_true")
    ap.add_argument("--batched", action="store_true")
    ap.add_argument("--old-layout", action="store_true")
    ap.add_argument("--quantized", type=int)
    ap.add_argument("--block-size", type=int, default=0)
    a = ap.parse_args()
    g = np.random.default_rng(0)
    fused = a.activation == "swiglu" and a.fusion in (1, 2)
    rows = 2 * I if fused else I

    def w(*shape):
        return (g.standard_normal(shape) * 0.1).astype(np.float32)

    inits = [numpy_helper.from_array(w(H, E), "router")]
    attrs = dict(k=a.k, activation_type=a.activation)
    if a.fusion is not None:
        attrs["swiglu_fusion"] = a.fusion
    for name, value in (("swiglu_limit", a.limit), ("activation_alpha", a.alpha),
                        ("activation_beta", a.beta)):
        if value is not None:
            attrs[name] = value
    if a.normalize:
        attrs["normalize_routing_weights"] = 1
    x_shape = ["B", "S", H] if a.batched else ["T", H]
    nodes = [helper.make_node("MatMul", ["x", "router"], ["logits"])]
    if a.batched:
        inits.append(numpy_helper.from_array(np.array([-1, E], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["logits", "shape"], ["logits2d"]))
        logits = "logits2d"
    else:
        logits = "logits"
    if a.quantized:
        bits, pack = a.quantized, 8 // a.quantized
        attrs["expert_weight_bits"] = bits
        if a.block_size:
            attrs["block_size"] = a.block_size

        def q(n, k):
            codes = g.integers(0, 256, (E, n, k // pack)).astype(np.uint8)
            blocks = (k + a.block_size - 1) // a.block_size if a.block_size else 1
            scales = (g.random((E, n, blocks) if a.block_size else (E, n)) * 0.01
                      ).astype(np.float32)
            return codes, scales

        c1, s1 = q(rows, H)
        c2, s2 = q(H, I)
        inits += [numpy_helper.from_array(c1, "fc1"), numpy_helper.from_array(s1, "fc1_scales"),
                  numpy_helper.from_array(c2, "fc2"), numpy_helper.from_array(s2, "fc2_scales")]
        nodes.append(helper.make_node("QMoE", ["x", logits, "fc1", "fc1_scales", "",
                                               "fc2", "fc2_scales"], ["y"],
                                      domain="com.microsoft", **attrs))
    else:
        fc1 = w(E, H, rows) if a.old_layout else w(E, rows, H)
        fc2 = w(E, I, H) if a.old_layout else w(E, H, I)
        inits += [numpy_helper.from_array(fc1, "fc1"), numpy_helper.from_array(fc2, "fc2")]
        inputs = ["x", logits, "fc1", "", "fc2", "", "", ""]
        if a.bias:
            inits += [numpy_helper.from_array(w(E, rows), "fc1_bias"),
                      numpy_helper.from_array(w(E, H), "fc2_bias")]
            inputs[3], inputs[5] = "fc1_bias", "fc2_bias"
        if a.fc3:
            inits.append(numpy_helper.from_array(w(E, I, H), "fc3"))
            inputs[6] = "fc3"
        while inputs[-1] == "":
            inputs.pop()
        nodes.append(helper.make_node("MoE", inputs, ["y"], domain="com.microsoft",
                                      name="moe", **attrs))
    graph = helper.make_graph(
        nodes, "moe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, a.out)


if __name__ == "__main__":
    main()
