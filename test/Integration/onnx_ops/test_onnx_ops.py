"""The ONNX importer's standard operators, numerically, against ONNX Runtime.

Each case is a small ONNX model built with onnx.helper (several operators
per model, to keep the JIT compiles few), run by

    moe-run MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR

and by ONNX Runtime 1.30's CPU provider (npm onnxruntime-node, through
../onnx/ort_runner.py; all models go to one `node` process). Every graph
output is compared:

  * dtype: ORT's (bf16 results, which ORT's CPU kernels hardly support, are
    cast to float32 inside the graph);
  * shape: exactly;
  * values: exactly for integer and bool outputs; for float outputs
    max|ours - ORT| <= tol * max|ORT| with tol = 1e-5 for float32 results,
    4e-3 (a few f16 ulps) for float16 results and 1.6e-2 (two bf16 ulps)
    for results computed in bfloat16 inside the graph (cases say so).

The cases cover dynamic (dim_param) and static dimensions, numpy
broadcasting, negative axes, keepdims 0/1, the signature changes across
opsets (13, 17, 18, 21: axes as attribute or input, Split's num_outputs,
...) and shape computations as exporters emit them (Shape -> Gather ->
Unsqueeze -> Concat -> Reshape, Shape -> Slice, ConstantOfShape, Expand
with a computed shape, torch's Where(Equal(shape, -1), ...) pattern).

Error cases: an operator moe-mlir does not implement, or a Reshape whose
shape depends on tensor values, must fail with one line on stderr naming
the node and the operator, a non-zero exit status and no output files.

Tools: $MOE_RUN / $MOE_IMPORT (set by onnx-ops.test), else
<repo>/build/bin/moe-run and moe-import. Without onnxruntime-node the
ORT comparisons are skipped, with the reason (pytest -rs prints it); the
error cases still run."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the python onnx package builds the test models")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(INTEGRATION))
sys.path.insert(0, os.path.join(INTEGRATION, "onnx"))
import ort_runner  # noqa: E402


def _keep_0d_inputs():
    """ort_runner._write_inputs passes 0-d inputs to ORT as shape [1]
    (np.ascontiguousarray makes 0-d arrays 1-d); while it does, give scalar
    feeds back their shape []."""
    import tempfile
    original = getattr(ort_runner, "_write_inputs", None)
    if original is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        try:
            (spec,) = original(tmp, 0, {"s": np.float32(1.0)})
            if spec.get("shape") != [1]:
                return
        except Exception:
            return

    def write_inputs(tmp, idx, feeds):
        specs = original(tmp, idx, feeds)
        for spec, value in zip(specs, feeds.values()):
            if np.ndim(value) == 0:
                spec["shape"] = []
        return specs

    ort_runner._write_inputs = write_inputs


_keep_0d_inputs()

MOE_RUN = os.environ.get("MOE_RUN") or os.path.join(ROOT, "build", "bin", "moe-run")
MOE_IMPORT = os.environ.get("MOE_IMPORT") or os.path.join(ROOT, "build", "bin", "moe-import")
TIMEOUT = 120

F32_TOL = 1e-5
F16_TOL = 4e-3
BF16_TOL = 1.6e-2
I64_MAX = np.iinfo(np.int64).max

# IR version per opset (ORT checks that the IR version knows the opset).
_IR = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


#===-----------------------------------------------------------------------===#
# Building models
#===-----------------------------------------------------------------------===#

_NP_TO_TP = {
    np.dtype(np.float32): TP.FLOAT, np.dtype(np.float16): TP.FLOAT16,
    np.dtype(np.int32): TP.INT32, np.dtype(np.int64): TP.INT64,
    np.dtype(np.uint8): TP.UINT8, np.dtype(np.bool_): TP.BOOL,
}


def node(op, ins, outs, **attrs):
    return helper.make_node(op, list(ins), [outs] if isinstance(outs, str) else list(outs),
                            **attrs)


def const(name, value, dtype=None):
    """A Constant node producing `value` (a numpy array or a Python list)."""
    arr = np.asarray(value, dtype=dtype)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(arr, name + "_value"))


def i64(*values):
    return np.array(values, dtype=np.int64)


class Case:
    """One model: `nodes` over graph inputs `feeds` (name -> array),
    compared on `outputs`. `dynamic`: the inputs whose leading dimension is
    the dim_param "N" (a set), or name -> one dim_param name, "?" (unknown,
    no dim_param) or None (static) per dimension (a dict). `inits`: initializers (name -> array).
    `tol`: output name -> tolerance for float outputs (default by dtype)."""

    def __init__(self, name, nodes, feeds, outputs, opset=17, inits=None, dynamic=(),
                 tol=None):
        self.name = name
        self.nodes = nodes
        self.feeds = {k: np.asarray(v) for k, v in feeds.items()}
        self.outputs = list(outputs)
        self.opset = opset
        self.inits = inits or {}
        self.dynamic = dynamic if isinstance(dynamic, dict) else {
            name: ["N"] + [None] * (np.ndim(self.feeds[name]) - 1) for name in dynamic}
        # (a dim_param "?" stands for an unknown dimension without a name)
        self.tol = tol or {}
        self.path = None

    def model(self):
        inputs = []
        for name, arr in self.feeds.items():
            shape = list(arr.shape)
            for d, param in enumerate(self.dynamic.get(name, [])):
                if param is not None:
                    shape[d] = None if param == "?" else param
            inputs.append(helper.make_tensor_value_info(name, _NP_TO_TP[arr.dtype], shape))
        outputs = [helper.make_empty_tensor_value_info(n) for n in self.outputs]
        inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="onnx_ops_test")
        m.ir_version = _IR[self.opset]
        return m

    def save(self, directory):
        self.path = os.path.join(directory, self.name + ".onnx")
        onnx.save(self.model(), self.path)
        return self.path


CASES = []


def case(*args, **kwargs):
    c = Case(*args, **kwargs)
    assert all(c.name != o.name for o in CASES), c.name
    CASES.append(c)
    return c


def rng(seed):
    return np.random.default_rng(seed)


def away_from_zero(g, shape, lo=0.2, hi=3.0):
    return (g.choice([-1.0, 1.0], size=shape) * g.uniform(lo, hi, shape)).astype(np.float32)


def f32(g, *shape, scale=1.0):
    return (g.standard_normal(shape) * scale).astype(np.float32)


#===-----------------------------------------------------------------------===#
# Elementwise
#===-----------------------------------------------------------------------===#

UNARY = ["Sqrt", "Reciprocal", "Neg", "Exp", "Log", "Tanh", "Sigmoid", "Relu", "Erf", "Abs"]
POSITIVE_ONLY = {"Sqrt", "Log"}


def unary_nodes(suffix=""):
    nodes, outs = [], []
    for op in UNARY:
        out = op.lower() + suffix
        nodes.append(node(op, ["p" if op in POSITIVE_ONLY else "x"], out))
        outs.append(out)
    return nodes, outs


def _unary_cases():
    # f32, dynamic leading dimension, opset 20 (Gelu, both approximations).
    g = rng(1)
    nodes, outs = unary_nodes()
    nodes += [node("Gelu", ["x"], "gelu"), node("Gelu", ["x"], "gelu_tanh", approximate="tanh"),
              node("Exp", ["big"], "exp_big"), node("Sigmoid", ["big"], "sigmoid_big"),
              node("Tanh", ["big"], "tanh_big")]
    outs += ["gelu", "gelu_tanh", "exp_big", "sigmoid_big", "tanh_big"]
    case("unary_f32_dynamic", nodes,
         {"x": away_from_zero(g, (3, 5)), "p": g.uniform(0.05, 6, (3, 5)).astype(np.float32),
          "big": np.array([[-80, -20, -1e-3, 0, 15, 40, 80]], np.float32)},
         outs, opset=20, dynamic={"x", "p"})
    # f32, static 3-d, opset 13.
    g = rng(2)
    nodes, outs = unary_nodes()
    case("unary_f32_static", nodes,
         {"x": away_from_zero(g, (2, 3, 4)), "p": g.uniform(0.05, 6, (2, 3, 4)).astype(np.float32)},
         outs, opset=13)
    # f16 in and out (computed in f32 and rounded once by moe-mlir).
    g = rng(3)
    nodes, outs = unary_nodes()
    nodes += [node("Gelu", ["x"], "gelu"), node("Gelu", ["x"], "gelu_tanh", approximate="tanh")]
    outs += ["gelu", "gelu_tanh"]
    case("unary_f16", nodes,
         {"x": away_from_zero(g, (2, 6)).astype(np.float16),
          "p": g.uniform(0.05, 6, (2, 6)).astype(np.float16)},
         outs, opset=20, dynamic={"x", "p"})


_unary_cases()


def _binary_cases():
    g = rng(10)
    case("binary_f32_broadcast_dynamic", [
        node("Add", ["a", "b"], "add"),
        node("Sub", ["c", "a"], "sub_lower_rank_first"),
        node("Mul", ["a", "d"], "mul_scalar"),
        node("Div", ["a", "b"], "div"),
        node("Pow", ["p", "c"], "pow"),
        node("Add", ["a", "e"], "add_unit_dims"),
        node("Mul", ["b", "c"], "mul_static_result"),
        node("Sub", ["d", "d"], "sub_scalars"),
    ], {"a": f32(g, 2, 3, 4), "b": away_from_zero(g, (4,)), "c": f32(g, 3, 1),
        "d": np.array(1.5, np.float32), "e": f32(g, 2, 1, 1),
        "p": g.uniform(0.1, 3, (2, 3, 4)).astype(np.float32)},
        ["add", "sub_lower_rank_first", "mul_scalar", "div", "pow", "add_unit_dims",
         "mul_static_result", "sub_scalars"],
        opset=13, dynamic={"a", "e", "p"})

    g = rng(11)
    case("binary_f32_static", [
        const("two", 2.0), const("half", 0.5), const("three", 3.0),
        node("Add", ["a", "b"], "add"), node("Sub", ["a", "b"], "sub"),
        node("Mul", ["a", "b"], "mul"), node("Div", ["a", "b"], "div"),
        node("Pow", ["a", "two"], "square"), node("Pow", ["p", "half"], "sqrt"),
        node("Pow", ["a", "three"], "cube_negative_base"),
        node("Pow", ["p", "a"], "pow"),
    ], {"a": away_from_zero(g, (2, 3)), "b": away_from_zero(g, (2, 1)),
        "p": g.uniform(0.1, 3, (2, 3)).astype(np.float32)},
        ["add", "sub", "mul", "div", "square", "sqrt", "cube_negative_base", "pow"], opset=17)

    # Pow's exponent may have another type than its base (T1 since opset 12).
    g = rng(12)
    case("pow_mixed_types", [
        const("two_i64", np.array(2, np.int64)), const("three_i32", np.array([3], np.int32)),
        node("Pow", ["a", "two_i64"], "square"),
        node("Pow", ["a", "three_i32"], "cube"),
        node("Pow", ["a", "e"], "pow_int_tensor"),
    ], {"a": away_from_zero(g, (2, 3)), "e": np.array([0, 1, 2], np.int64)},
        ["square", "cube", "pow_int_tensor"], opset=15)

    g = rng(13)
    # Integer division truncates toward zero (as C and ONNX Runtime do).
    case("binary_int", [
        node("Add", ["a", "b"], "add"), node("Sub", ["a", "b"], "sub"),
        node("Mul", ["a", "b"], "mul"), node("Div", ["a", "b"], "div"),
        node("Add", ["i", "j"], "add_i32"), node("Mul", ["i", "j"], "mul_i32"),
        node("Div", ["i", "j"], "div_i32"), node("Sub", ["i", "j"], "sub_i32"),
        node("Max", ["a", "b"], "max_i64"), node("Min", ["i", "j"], "min_i32"),
        node("Abs", ["a"], "abs_i64"), node("Neg", ["i"], "neg_i32"),
    ], {"a": g.integers(-50, 50, (3, 4)).astype(np.int64),
        "b": np.array([-7, -3, 2, 5], np.int64),
        "i": g.integers(-50, 50, (2, 4)).astype(np.int32),
        "j": np.array([[3], [-4]], np.int32)},
        ["add", "sub", "mul", "div", "add_i32", "mul_i32", "div_i32", "sub_i32", "max_i64",
         "min_i32", "abs_i64", "neg_i32"], opset=14, dynamic={"a"})

    g = rng(14)
    case("variadic", [
        node("Max", ["a", "b", "c"], "max3"), node("Min", ["a", "b", "c"], "min3"),
        node("Sum", ["a", "b", "c"], "sum3"), node("Mean", ["a", "b", "c"], "mean3"),
        node("Max", ["a"], "max1"), node("Sum", ["a"], "sum1"), node("Mean", ["a", "b"], "mean2"),
        node("Max", ["i", "j"], "max_i32"),
        node("Min", ["i", "j", "i"], "min_i32"),
    ], {"a": f32(g, 2, 3), "b": f32(g, 3), "c": f32(g, 2, 1),
        "i": g.integers(-9, 9, (4, 3)).astype(np.int32),
        "j": g.integers(-9, 9, (3,)).astype(np.int32)},
        ["max3", "min3", "sum3", "mean3", "max1", "sum1", "mean2", "max_i32", "min_i32"], opset=13, dynamic={"a", "i"})

    g = rng(15)
    a = np.round(f32(g, 3, 4)).astype(np.float32)
    b = np.round(f32(g, 4)).astype(np.float32)
    case("compare_logic_where", [
        node("Equal", ["a", "b"], "eq"), node("Less", ["a", "b"], "lt"),
        node("Greater", ["a", "b"], "gt"),
        node("Equal", ["i", "j"], "eq_i64"), node("Less", ["i", "j"], "lt_i64"),
        node("Greater", ["j", "i"], "gt_i64"),
        node("Equal", ["p", "q"], "eq_bool"),
        node("And", ["p", "q"], "and"), node("Or", ["p", "q"], "or"), node("Not", ["p"], "not"),
        node("And", ["p", "r"], "and_broadcast"),
        node("Where", ["lt", "a", "b"], "where"),
        node("Where", ["r", "a", "s"], "where_scalar"),
        node("Where", ["p", "i", "j"], "where_i64"),
    ], {"a": a, "b": b, "i": g.integers(-3, 3, (3, 4)).astype(np.int64),
        "j": g.integers(-3, 3, (4,)).astype(np.int64),
        "p": g.integers(0, 2, (3, 4)).astype(np.bool_),
        "q": g.integers(0, 2, (3, 4)).astype(np.bool_),
        "r": np.array([[True], [False], [True]]), "s": np.array(-9.0, np.float32)},
        ["eq", "lt", "gt", "eq_i64", "lt_i64", "gt_i64", "eq_bool", "and", "or", "not",
         "and_broadcast", "where", "where_scalar", "where_i64"],
        opset=13, dynamic={"a", "i", "p", "q", "r"})

    g = rng(16)
    case("clip", [
        node("Clip", ["x", "lo", "hi"], "both"), node("Clip", ["x", "lo"], "min_only"),
        node("Clip", ["x", "", "hi"], "max_only"), node("Clip", ["x"], "none"),
        const("lo_c", np.array(0.0, np.float32)), node("Clip", ["x", "lo_c"], "relu_like"),
    ], {"x": f32(g, 3, 5, scale=2)}, ["both", "min_only", "max_only", "none", "relu_like"],
        opset=13, dynamic={"x"},
        inits={"lo": np.array(-0.5, np.float32), "hi": np.array(1.25, np.float32)})

    g = rng(17)
    case("clip_int", [
        const("lo", np.array(-3, np.int32)), const("hi", np.array(4, np.int32)),
        node("Clip", ["x", "lo", "hi"], "both"), node("Clip", ["x", "", "hi"], "max_only"),
        const("lo64", np.array(0, np.int64)), node("Clip", ["y", "lo64"], "min_only_i64"),
    ], {"x": g.integers(-9, 9, (3, 4)).astype(np.int32),
        "y": g.integers(-9, 9, (5,)).astype(np.int64)},
        ["both", "max_only", "min_only_i64"], opset=13)


_binary_cases()


def _cast_cases():
    g = rng(20)
    x = np.array([[-2.7, -1.5, -0.5, 0.0], [0.4, 1.5, 2.5, 3.99], [100.2, -100.7, 7.0, -0.0]],
                 np.float32)
    to = {"i32": TP.INT32, "i64": TP.INT64, "bool": TP.BOOL, "f16": TP.FLOAT16,
          "f32": TP.FLOAT, "u8": TP.UINT8, "bf16": TP.BFLOAT16}
    case("cast", [
        node("Cast", ["x"], "f32_to_i32", to=to["i32"]),
        node("Cast", ["x"], "f32_to_i64", to=to["i64"]),
        node("Cast", ["x"], "f32_to_bool", to=to["bool"]),
        node("Cast", ["x"], "f32_to_f16", to=to["f16"]),
        node("Cast", ["x"], "x_bf16", to=to["bf16"]),
        node("Cast", ["x_bf16"], "f32_bf16_f32", to=to["f32"]),
        node("Abs", ["x"], "x_abs"), node("Cast", ["x_abs"], "f32_to_u8", to=to["u8"]),
        node("Cast", ["i"], "i64_to_f32", to=to["f32"]),
        node("Cast", ["i"], "i64_to_i32", to=to["i32"]),
        node("Cast", ["i"], "i64_to_bool", to=to["bool"]),
        node("Cast", ["i"], "i64_to_f16", to=to["f16"]),
        node("Cast", ["i"], "i64_to_i64", to=to["i64"]),
        node("Cast", ["j"], "i32_to_i64", to=to["i64"]),
        node("Cast", ["b"], "bool_to_f32", to=to["f32"]),
        node("Cast", ["b"], "bool_to_i64", to=to["i64"]),
        node("Cast", ["u"], "u8_to_f32", to=to["f32"]),
        node("Cast", ["u"], "u8_to_i32", to=to["i32"]),
        node("Cast", ["h"], "f16_to_f32", to=to["f32"]),
        node("Cast", ["h"], "f16_to_i32", to=to["i32"]),
        node("Cast", ["h"], "h_bf16", to=to["bf16"]),
        node("Cast", ["h_bf16"], "f16_bf16_f32", to=to["f32"]),
        # f64 and i8 inside the graph (moe-run does not take or return them).
        node("Cast", ["x"], "x_f64", to=TP.DOUBLE),
        node("Mul", ["x_f64", "x_f64"], "sq_f64"),
        node("Cast", ["sq_f64"], "f32_f64_f32", to=to["f32"]),
        node("Cast", ["i"], "i_i8", to=TP.INT8),
        node("Cast", ["i_i8"], "i64_i8_i64_wraps", to=to["i64"]),
        node("Cast", ["x"], "x_i8", to=TP.INT8),
        node("Cast", ["x_i8"], "f32_i8_i32", to=to["i32"]),
    ], {"x": x, "i": np.array([[-300, -1, 0, 1], [2, 70000, 255, -2 ** 40]], np.int64),
        "j": g.integers(-1000, 1000, (4,)).astype(np.int32),
        "b": np.array([True, False, True]), "u": np.array([0, 1, 127, 128, 255], np.uint8),
        "h": np.array([-3.75, 0.5, 1000.0, 65504.0], np.float16)},
        ["f32_to_i32", "f32_to_i64", "f32_to_bool", "f32_to_f16", "f32_bf16_f32", "f32_to_u8",
         "i64_to_f32", "i64_to_i32", "i64_to_bool", "i64_to_f16", "i64_to_i64", "i32_to_i64",
         "bool_to_f32", "bool_to_i64", "u8_to_f32", "u8_to_i32", "f16_to_f32", "f16_to_i32",
         "f16_bf16_f32", "f32_f64_f32", "i64_i8_i64_wraps", "f32_i8_i32"],
        opset=13, dynamic={"x"}, tol={"f32_bf16_f32": 0.0, "f16_bf16_f32": 0.0})
    # bf16 rounding is exact (round to nearest even): tolerance 0 above.


_cast_cases()


#===-----------------------------------------------------------------------===#
# MatMul, Gemm
#===-----------------------------------------------------------------------===#

def _matmul_cases():
    g = rng(30)
    case("matmul_f32", [
        node("MatMul", ["v", "w"], "vv"), node("MatMul", ["v", "B"], "vB"),
        node("MatMul", ["A", "v"], "Av"), node("MatMul", ["A", "B"], "AB"),
        node("MatMul", ["T", "B"], "TB"), node("MatMul", ["P", "Q"], "PQ_broadcast"),
        node("MatMul", ["T", "v"], "Tv"), node("MatMul", ["v", "Q"], "vQ"),
        node("MatMul", ["D", "B"], "DB_dynamic"), node("MatMul", ["D", "E"], "DE_dynamic_batch"),
        node("MatMul", ["B1", "D"], "B1D_2d_times_3d"),
    ], {"v": f32(g, 4), "w": f32(g, 4), "A": f32(g, 3, 4), "B": f32(g, 4, 5),
        "T": f32(g, 2, 3, 4), "P": f32(g, 2, 1, 3, 4), "Q": f32(g, 5, 4, 6),
        "D": f32(g, 3, 3, 4), "E": f32(g, 3, 4, 2), "B1": f32(g, 2, 3)},
        ["vv", "vB", "Av", "AB", "TB", "PQ_broadcast", "Tv", "vQ", "DB_dynamic",
         "DE_dynamic_batch", "B1D_2d_times_3d"],
        opset=13, dynamic={"D", "E"})

    g = rng(31)
    case("matmul_int_f16", [
        node("MatMul", ["i", "j"], "ij_i32"), node("MatMul", ["k", "l"], "kl_i64_batched"),
        node("MatMul", ["h", "hh"], "f16"),
    ], {"i": g.integers(-5, 5, (3, 4)).astype(np.int32),
        "j": g.integers(-5, 5, (4, 2)).astype(np.int32),
        "k": g.integers(-5, 5, (2, 3, 4)).astype(np.int64),
        "l": g.integers(-5, 5, (4, 2)).astype(np.int64),
        "h": f32(g, 2, 3, 8).astype(np.float16), "hh": f32(g, 8, 5).astype(np.float16)},
        ["ij_i32", "kl_i64_batched", "f16"], opset=13, dynamic={"h"})

    g = rng(32)
    case("gemm", [
        node("Gemm", ["A", "B"], "plain"),
        node("Gemm", ["At", "B", "c_row"], "transA_crow", transA=1),
        node("Gemm", ["A", "Bt", "c_col"], "transB_ccol_alpha_beta", transB=1, alpha=0.5,
             beta=2.0),
        node("Gemm", ["At", "Bt", "c_scalar"], "transAB_cscalar", transA=1, transB=1),
        node("Gemm", ["A", "B", "c_full"], "beta0", alpha=2.0, beta=0.0),
        node("Gemm", ["A", "B", "c_full"], "alpha_neg", alpha=-1.0),
        node("Gemm", ["M", "B", "c_row"], "dynamic_m"),
        node("Gemm", ["M", "B", "c_11"], "c_1x1"),
    ], {"A": f32(g, 3, 4), "At": f32(g, 4, 3), "B": f32(g, 4, 5), "Bt": f32(g, 5, 4),
        "c_row": f32(g, 5), "c_col": f32(g, 3, 1), "c_scalar": np.array(0.25, np.float32),
        "c_full": f32(g, 3, 5), "M": f32(g, 6, 4), "c_11": f32(g, 1, 1)},
        ["plain", "transA_crow", "transB_ccol_alpha_beta", "transAB_cscalar", "beta0",
         "alpha_neg", "dynamic_m", "c_1x1"], opset=13, dynamic={"M"})


_matmul_cases()


#===-----------------------------------------------------------------------===#
# Reductions, normalizations, TopK
#===-----------------------------------------------------------------------===#

def reduce_node(opset, op, out, axes=None, data="x", **attrs):
    """A Reduce* node with `axes` as an attribute or an input, as `opset`
    wants (ReduceSum takes an input since 13, the others since 18)."""
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    nodes = []
    ins = [data]
    if axes is not None:
        if as_input:
            nodes.append(const(out + "_axes", i64(*axes)))
            ins.append(out + "_axes")
        else:
            attrs["axes"] = list(axes)
    nodes.append(node(op, ins, out, **attrs))
    return nodes


def _reduce_cases():
    for opset in (13, 17, 18, 21):
        g = rng(40 + opset)
        specs = [
            ("ReduceSum", "sum_axis1", [1], {}),
            ("ReduceSum", "sum_neg_nokeep", [-1], {"keepdims": 0}),
            ("ReduceSum", "sum_all", None, {}),
            ("ReduceMean", "mean_0_2_nokeep", [0, 2], {"keepdims": 0}),
            ("ReduceMean", "mean_all_nokeep", None, {"keepdims": 0}),
            ("ReduceMax", "max_neg2", [-2], {}),
            ("ReduceMin", "min_all_nokeep", None, {"keepdims": 0}),
            ("ReduceMin", "min_0_neg1", [0, -1], {}),
            ("ReduceProd", "prod_2", [2], {}),
            ("ReduceSumSquare", "sumsq_1_nokeep", [1], {"keepdims": 0}),
        ]
        nodes, outs = [], []
        for op, out, axes, attrs in specs:
            nodes += reduce_node(opset, op, out, axes, **attrs)
            outs.append(out)
        if opset >= 18:
            # An empty axes input with noop_with_empty_axes: the identity.
            nodes += [const("no_axes", np.zeros((0,), np.int64)),
                      node("ReduceMean", ["x", "no_axes"], "mean_noop", noop_with_empty_axes=1),
                      node("ReduceMax", ["x", "no_axes"], "max_empty_axes_all",
                           keepdims=0)]
            outs += ["mean_noop", "max_empty_axes_all"]
        case(f"reduce_f32_opset{opset}", nodes, {"x": f32(g, 3, 4, 5)}, outs, opset=opset,
             dynamic={"x"})

    g = rng(50)
    nodes = []
    for op, out, axes, attrs in [("ReduceSum", "sum_i64", [1], {}),
                                 ("ReduceMax", "max_i64", [-1], {"keepdims": 0}),
                                 ("ReduceMin", "min_i64", None, {"keepdims": 0}),
                                 ("ReduceProd", "prod_i64", [0], {})]:
        nodes += reduce_node(18, op, out, axes, **attrs)
    nodes += [node("Cast", ["x"], "x32", to=TP.INT32),
              const("ax", i64(0)), node("ReduceSum", ["x32", "ax"], "sum_i32", keepdims=0),
              node("ReduceMax", ["x32", "ax"], "max_i32")]
    case("reduce_int", nodes, {"x": g.integers(-20, 20, (3, 4)).astype(np.int64)},
         ["sum_i64", "max_i64", "min_i64", "prod_i64", "sum_i32", "max_i32"], opset=18,
         dynamic={"x"})

    g = rng(51)
    nodes = []
    for op, out, axes, attrs in [("ReduceSum", "sum", [1], {}),
                                 ("ReduceMean", "mean", [-1], {"keepdims": 0}),
                                 ("ReduceMax", "max", None, {})]:
        nodes += reduce_node(18, op, out, axes, **attrs)
    case("reduce_f16", nodes, {"x": f32(g, 4, 16).astype(np.float16)}, ["sum", "mean", "max"],
         opset=18)


_reduce_cases()


def _softmax_cases():
    g = rng(60)
    x = f32(g, 2, 3, 5, scale=3)
    x[0, 0, 0] = 40.0  # large logits must not overflow
    case("softmax", [
        node("Softmax", ["x"], "last"),
        node("Softmax", ["x"], "axis0", axis=0), node("Softmax", ["x"], "axis_neg2", axis=-2),
        node("LogSoftmax", ["x"], "log_last"), node("LogSoftmax", ["x"], "log_axis1", axis=1),
        node("Softmax", ["h"], "f16"),
    ], {"x": x, "h": f32(g, 3, 7).astype(np.float16)},
        ["last", "axis0", "axis_neg2", "log_last", "log_axis1", "f16"],
        opset=13, dynamic={"x"})


_softmax_cases()


def _layernorm_cases():
    g = rng(70)
    x = f32(g, 2, 3, 8, scale=2) + 1.0
    case("layernorm", [
        node("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv_std"]),
        node("LayerNormalization", ["x", "scale2"], "y_axis1", axis=1, epsilon=1e-3),
        node("LayerNormalization", ["x", "scale", "bias"], "y_axis_neg1_eps", axis=-1,
             epsilon=0.1),
        node("SimplifiedLayerNormalization", ["x", "scale"], "rms", epsilon=1e-6),
        node("SimplifiedLayerNormalization", ["x", "scale"], ["rms_eps", "rms_inv_std"],
             epsilon=0.01),
    ], {"x": x}, ["y", "mean", "inv_std", "y_axis1", "y_axis_neg1_eps", "rms", "rms_eps",
                  "rms_inv_std"],
        opset=17, dynamic={"x"},
        inits={"scale": f32(g, 8), "bias": f32(g, 8), "scale2": f32(g, 3, 8)})
    g = rng(71)
    case("layernorm_f16_bf16", [
        node("LayerNormalization", ["h", "hs", "hb"], ["y_f16", "mean_f16", "inv_std_f16"]),
        node("Cast", ["x"], "xb", to=TP.BFLOAT16), node("Cast", ["s"], "sb", to=TP.BFLOAT16),
        node("Cast", ["bb"], "bias_b", to=TP.BFLOAT16),
        node("LayerNormalization", ["xb", "sb", "bias_b"], "yb"),
        node("Cast", ["yb"], "y_bf16", to=TP.FLOAT),
    ], {"h": f32(g, 3, 16).astype(np.float16), "hs": f32(g, 16).astype(np.float16),
        "hb": f32(g, 16).astype(np.float16), "x": f32(g, 3, 16), "s": f32(g, 16),
        "bb": f32(g, 16)},
        ["y_f16", "mean_f16", "inv_std_f16", "y_bf16"], opset=17, tol={"y_bf16": BF16_TOL})


_layernorm_cases()


def _topk_cases():
    g = rng(80)
    x = np.array([[3, 1, 3, 2, 5, 5], [0, -1, 4, 4, 4, 1], [2, 2, 2, 2, 2, 2]], np.float32)
    x = x + 0 * f32(g, 3, 6)
    case("topk_argmax", [
        const("k3", i64(3)), const("k2", i64(2)),
        node("TopK", ["x", "k3"], ["top3_v", "top3_i"]),
        node("TopK", ["x", "k2"], ["bottom2_axis0_v", "bottom2_axis0_i"], axis=0, largest=0),
        node("TopK", ["r", "k3"], ["rand_v", "rand_i"], axis=-2),
        node("TopK", ["n", "k2"], ["int_v", "int_i"]),
        node("ArgMax", ["x"], "argmax_axis1", axis=1),
        node("ArgMin", ["x"], "argmin_axis0_nokeep", axis=0, keepdims=0),
        node("ArgMax", ["n"], "argmax_int_neg1_nokeep", axis=-1, keepdims=0),
        node("ArgMin", ["r"], "argmin_rand"),
    ], {"x": x, "r": f32(g, 5, 4, 3), "n": g.integers(-3, 3, (4, 5)).astype(np.int64)},
        ["top3_v", "top3_i", "bottom2_axis0_v", "bottom2_axis0_i", "rand_v", "rand_i",
         "int_v", "int_i", "argmax_axis1", "argmin_axis0_nokeep", "argmax_int_neg1_nokeep",
         "argmin_rand"],
        opset=13, dynamic={"x", "n"})


_topk_cases()


#===-----------------------------------------------------------------------===#
# Constants and shapes
#===-----------------------------------------------------------------------===#

def _constant_cases():
    g = rng(90)
    case("constants", [
        const("c_tensor", np.arange(6, dtype=np.float32).reshape(2, 3)),
        node("Constant", [], "c_float", value_float=2.5),
        node("Constant", [], "c_floats", value_floats=[1.0, -2.0, 3.5]),
        node("Constant", [], "c_int", value_int=-7),
        node("Constant", [], "c_ints", value_ints=[4, 0, -1]),
        const("shape23", i64(2, 3)),
        node("ConstantOfShape", ["shape23"], "zeros_f32"),
        node("ConstantOfShape", ["shape23"], "sevens_i64",
             value=numpy_helper.from_array(np.array([7], np.int64))),
        node("Shape", ["x"], "xs"),
        node("ConstantOfShape", ["xs"], "ones_like_x",
             value=numpy_helper.from_array(np.array([1.5], np.float32))),
        node("ConstantOfShape", ["xs"], "true_like_x",
             value=numpy_helper.from_array(np.array([True]))),
        const("empty_shape", np.zeros((0,), np.int64)),
        node("ConstantOfShape", ["empty_shape"], "scalar_i32",
             value=numpy_helper.from_array(np.array([3], np.int32))),
        const("r0", np.array(0, np.int64)), const("r10", np.array(10, np.int64)),
        const("r3", np.array(3, np.int64)), const("rm3", np.array(-3, np.int64)),
        node("Range", ["r0", "r10", "r3"], "range_i64"),
        node("Range", ["r10", "r0", "rm3"], "range_i64_down"),
        const("fs", np.array(0.5, np.float32)), const("fl", np.array(2.0, np.float32)),
        const("fd", np.array(0.25, np.float32)),
        node("Range", ["fs", "fl", "fd"], "range_f32"),
        const("i32s", np.array(-2, np.int32)), const("i32l", np.array(5, np.int32)),
        const("i32d", np.array(2, np.int32)),
        node("Range", ["i32s", "i32l", "i32d"], "range_i32"),
        const("zero", i64(0)), node("Gather", ["xs", "zero"], "n"),
        const("one", np.array(1, np.int64)),
        node("Range", ["r0", "n", "one"], "range_dynamic"),
    ], {"x": f32(g, 3, 2)},
        ["c_tensor", "c_float", "c_floats", "c_int", "c_ints", "zeros_f32", "sevens_i64",
         "ones_like_x", "true_like_x", "scalar_i32", "range_i64", "range_i64_down",
         "range_f32", "range_i32", "range_dynamic"],
        opset=13, dynamic={"x"})


_constant_cases()


def _shape_chain_cases():
    g = rng(100)
    case("shape_chains", [
        node("Shape", ["x"], "shape"),
        node("Size", ["x"], "size"),
        # Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
        const("zero", np.array(0, np.int64)),
        node("Gather", ["shape", "zero"], "n"),
        const("ax0", i64(0)),
        node("Unsqueeze", ["n", "ax0"], "n1"),
        const("m1_8", i64(-1, 8)),
        node("Concat", ["n1", "m1_8"], "target", axis=0),
        node("Reshape", ["x", "target"], "reshaped"),
        # Shape -> Slice, product of the tail -> Reshape [N, 4*6].
        const("s1", i64(1)), const("s3", i64(3)),
        node("Slice", ["shape", "s1", "s3"], "tail"),
        node("ReduceProd", ["tail"], "tail_prod", keepdims=1),
        node("Concat", ["n1", "tail_prod"], "flat_shape", axis=0),
        node("Reshape", ["x", "flat_shape"], "flattened"),
        # Arithmetic on shape values: [N * 4, 6], [N, 2, 12] via Div.
        const("one_idx", i64(1)), node("Gather", ["shape", "one_idx"], "d1"),
        node("Mul", ["n1", "d1"], "n_times_4"),
        const("two_i", np.array(2, np.int64)), const("six", i64(6)),
        node("Concat", ["n_times_4", "six"], "merged_shape", axis=0),
        node("Reshape", ["x", "merged_shape"], "merged"),
        node("Div", ["d1", "two_i"], "half4"),
        node("Mul", ["half4", "six"], "twelve"),
        node("Concat", ["n1", "half4", "twelve"], "split_shape", axis=0),
        node("Reshape", ["x", "split_shape"], "split_dims"),
        # ConstantOfShape on a computed shape, Expand with a computed shape.
        node("Concat", ["n1", "s3"], "ns", axis=0),
        node("ConstantOfShape", ["ns"], "filled",
             value=numpy_helper.from_array(np.array([0.5], np.float32))),
        node("Concat", ["n1", "one_idx", "six"], "expand_shape", axis=0),
        node("Expand", ["row", "expand_shape"], "expanded"),
        # torch.onnx's expand(-1, ...) export: Where(Equal(shape, -1), 1, shape).
        const("want", i64(-1, 4, 6)),
        node("Equal", ["want", "minus1"], "is_neg"),
        node("ConstantOfShape", ["s3"], "ones",
             value=numpy_helper.from_array(np.array([1], np.int64))),
        node("Where", ["is_neg", "ones", "want"], "torch_shape"),
        node("Expand", ["row", "torch_shape"], "torch_expanded"),
        node("Add", ["x", "torch_expanded"], "x_plus_row"),
        # Int shape arithmetic through Cast (exporters insert these).
        node("Cast", ["shape"], "shape_i32", to=TP.INT32),
        node("Cast", ["shape_i32"], "shape_back", to=TP.INT64),
        node("Reshape", ["x", "shape_back"], "same_shape"),
    ], {"x": f32(g, 3, 4, 6), "row": f32(g, 1, 6)},
        ["shape", "size", "reshaped", "tail", "flattened", "merged", "split_dims", "filled",
         "expanded", "torch_expanded", "x_plus_row", "same_shape", "shape_i32"],
        opset=13, dynamic={"x"}, inits={"minus1": np.array(-1, np.int64)})

    g = rng(101)
    case("shape_start_end", [
        node("Shape", ["x"], "all"),
        node("Shape", ["x"], "from1", start=1),
        node("Shape", ["x"], "neg_range", start=-2, end=-1),
        node("Shape", ["x"], "clamped", start=-10, end=2),
        node("Shape", ["x"], "empty", start=2, end=1),
        # Shape of a dynamic tensor feeding a Reshape: [N, 3, 2] -> [N*3, 2].
        node("Shape", ["x"], "lead", end=1),
        node("Shape", ["x"], "from1_last", start=-1),
        const("m1", i64(-1)), node("Concat", ["m1", "from1_last"], "tgt", axis=0),
        node("Reshape", ["x", "tgt"], "reshaped"),
    ], {"x": f32(g, 4, 3, 2)},
        ["all", "from1", "neg_range", "clamped", "empty", "lead", "reshaped"],
        opset=17, dynamic={"x"})


_shape_chain_cases()


def _reshape_cases():
    for opset in (13, 21):
        g = rng(110 + opset)
        nodes = [
            const("s_0_m1", i64(0, -1)), node("Reshape", ["x", "s_0_m1"], "keep0_rest"),
            const("s_m1_4", i64(-1, 4)), node("Reshape", ["x", "s_m1_4"], "rows_of_4"),
            const("s_0_0_m1", i64(0, 0, -1)), node("Reshape", ["x", "s_0_0_m1"], "copy_two"),
            const("s_6_4", i64(2, 3, 4, 1)), node("Reshape", ["y", "s_6_4"], "static_4d"),
            node("Flatten", ["x"], "flatten_default"),
            node("Flatten", ["x"], "flatten0", axis=0),
            node("Flatten", ["x"], "flatten_neg1", axis=-1),
            node("Flatten", ["x"], "flatten_rank", axis=4),
            const("ax_0_m1", i64(0, -1)), node("Unsqueeze", ["x", "ax_0_m1"], "unsq"),
            node("Squeeze", ["unsq", "ax_0_m1"], "sq_back"),
            const("ax_1_3", i64(3, 1)), node("Unsqueeze", ["y", "ax_1_3"], "unsq_unsorted"),
            node("Squeeze", ["u"], "squeeze_all_ones"),
            const("ax_m3", i64(-3)), node("Squeeze", ["u", "ax_m3"], "squeeze_neg"),
        ]
        outs = ["keep0_rest", "rows_of_4", "copy_two", "static_4d", "flatten_default",
                "flatten0", "flatten_neg1", "flatten_rank", "unsq", "sq_back", "unsq_unsorted",
                "squeeze_all_ones", "squeeze_neg"]
        if opset >= 14:
            # allowzero (opset 14): a 0 in the shape is a 0, not a copy.
            nodes += [const("sh_0", i64(0, 3)),
                      node("Reshape", ["e", "sh_0"], "allowzero_empty", allowzero=1)]
            outs.append("allowzero_empty")
        case(f"reshape_squeeze_opset{opset}", nodes,
             {"x": f32(g, 2, 3, 4, 5), "y": f32(g, 6, 4), "u": f32(g, 1, 3, 1),
              "e": np.zeros((0, 3), np.float32)},
             outs, opset=opset, dynamic={"x"})


_reshape_cases()


def _layout_cases():
    g = rng(120)
    case("transpose_expand_concat", [
        node("Transpose", ["x"], "t_default"),
        node("Transpose", ["x"], "t_102", perm=[1, 0, 2]),
        node("Transpose", ["x"], "t_201", perm=[2, 0, 1]),
        node("Transpose", ["i"], "t_int"),
        const("s234", i64(2, 3, 4)), node("Expand", ["c31", "s234"], "expand_up"),
        const("s31", i64(3, 1)), node("Expand", ["r14", "s31"], "expand_bidirectional"),
        const("s1", i64(1)), node("Expand", ["c31", "s1"], "expand_noop"),
        const("s223", i64(2, 2, 3)), node("Expand", ["i", "s223"], "expand_int"),
        node("Concat", ["x", "x2"], "concat0", axis=0),
        node("Concat", ["x", "x3"], "concat_neg1", axis=-1),
        node("Concat", ["x", "x3", "x"], "concat3_neg1", axis=-1),
        node("Concat", ["i", "i"], "concat_int", axis=1),
    ], {"x": f32(g, 2, 3, 4), "x2": f32(g, 1, 3, 4), "x3": f32(g, 2, 3, 2),
        "c31": f32(g, 3, 1), "r14": f32(g, 1, 4), "i": g.integers(0, 9, (2, 3)).astype(np.int64)},
        ["t_default", "t_102", "t_201", "t_int", "expand_up", "expand_bidirectional",
         "expand_noop", "expand_int", "concat0", "concat_neg1", "concat3_neg1", "concat_int"],
        opset=13, dynamic={"x", "x3"})

    g = rng(121)
    case("split_opset13", [
        node("Split", ["x"], ["e0", "e1", "e2"], axis=1),
        const("sizes", i64(1, 2, 3)),
        node("Split", ["x", "sizes"], ["s0", "s1", "s2"], axis=-1),
        node("Split", ["x"], ["d0", "d1"]),
    ], {"x": f32(g, 4, 3, 6)}, ["e0", "e1", "e2", "s0", "s1", "s2", "d0", "d1"],
        opset=13, dynamic={"x"})
    g = rng(122)
    case("split_opset18", [
        node("Split", ["x"], ["n0", "n1", "n2"], axis=-1, num_outputs=3),
        node("Split", ["x"], ["m0", "m1"], axis=1, num_outputs=2),
        const("sizes", i64(2, 5)),
        node("Split", ["x", "sizes"], ["s0", "s1"], axis=2),
    ], {"x": f32(g, 2, 4, 7)}, ["n0", "n1", "n2", "m0", "m1", "s0", "s1"],
        opset=18, dynamic={"x"})

    g = rng(123)
    nodes, outs = [], []

    def sl(out, starts, ends, axes=None, steps=None, data="x"):
        ins = [data]
        for nm, v in (("st", starts), ("en", ends), ("ax", axes), ("sp", steps)):
            if v is None:
                ins.append("")
                continue
            nodes.append(const(f"{out}_{nm}", i64(*v)))
            ins.append(f"{out}_{nm}")
        while ins[-1] == "":
            ins.pop()
        nodes.append(node("Slice", ins, out))
        outs.append(out)

    sl("basic", [1], [4], [1])
    sl("negative", [-3], [-1], [-1])
    sl("step2", [0], [6], [2], [2])
    sl("step3_odd", [1], [I64_MAX], [-1], [3])
    sl("to_end", [2], [I64_MAX], [1])
    sl("clamped", [-100], [100], [2])
    sl("empty", [4], [2], [1])
    sl("multi", [1, 0, -4], [3, 5, I64_MAX], [0, 1, 2], [1, 2, 1])
    sl("default_axes", [0, 1], [2, 3])
    sl("dynamic_axis", [1], [I64_MAX], [0])
    sl("dynamic_axis_neg", [-2], [I64_MAX], [0])
    sl("reverse", [-1], [-I64_MAX], [2], [-1])
    sl("reverse_step2", [4], [0], [1], [-2])
    sl("reverse_all_dims", [-1, -1, -1], [-I64_MAX, -I64_MAX, -I64_MAX], [0, 1, 2],
       [-1, -1, -1])
    sl("reverse_clamped", [100], [-100], [-1], [-3])
    sl("reverse_empty", [1], [3], [1], [-1])
    # int32 starts and ends.
    nodes += [const("st32", np.array([1], np.int32)), const("en32", np.array([-1], np.int32)),
              const("ax32", np.array([2], np.int32)),
              node("Slice", ["x", "st32", "en32", "ax32"], "int32_indices")]
    outs.append("int32_indices")
    case("slice", nodes, {"x": f32(g, 4, 5, 6)}, outs, opset=13, dynamic={"x"})


_layout_cases()


#===-----------------------------------------------------------------------===#
# Gather, GatherElements, ScatterElements
#===-----------------------------------------------------------------------===#

def _indexing_cases():
    g = rng(130)
    case("gather", [
        const("i0", np.array(0, np.int64)), node("Gather", ["x", "i0"], "axis0_scalar"),
        const("i2d", np.array([[0, -1], [2, 1]], np.int64)),
        node("Gather", ["x", "i2d"], "axis1_2d_neg", axis=1),
        const("ilast", np.array([3, -5, 0], np.int32)),
        node("Gather", ["x", "ilast"], "axis_neg1_i32", axis=-1),
        node("Gather", ["x", "idx"], "runtime_indices", axis=1),
        node("Gather", ["n", "idx"], "int_data"),
        node("Gather", ["emb", "tokens"], "embedding"),
    ], {"x": f32(g, 3, 4, 5), "idx": np.array([[1, -1, 0]], np.int64),
        "n": g.integers(0, 100, (4, 2)).astype(np.int64),
        "emb": f32(g, 10, 6), "tokens": np.array([[1, 9, 0], [4, 4, 2]], np.int64)},
        ["axis0_scalar", "axis1_2d_neg", "axis_neg1_i32", "runtime_indices", "int_data",
         "embedding"],
        opset=13, dynamic={"x", "tokens"})

    g = rng(131)
    data = f32(g, 3, 4)
    case("gather_scatter_elements", [
        node("GatherElements", ["x", "gi0"], "ge_axis0", axis=0),
        node("GatherElements", ["x", "gi1"], "ge_axis1_neg", axis=-1),
        node("ScatterElements", ["x", "si", "u"], "se_none", axis=1),
        node("ScatterElements", ["x", "sd", "u"], "se_add", axis=1, reduction="add"),
        node("ScatterElements", ["x", "sd", "u"], "se_mul", axis=1, reduction="mul"),
        node("ScatterElements", ["x", "sd", "u"], "se_max", axis=1, reduction="max"),
        node("ScatterElements", ["x", "sd", "u"], "se_min", axis=1, reduction="min"),
        node("ScatterElements", ["x", "si0", "u0"], "se_axis0_neg", axis=0),
        node("ScatterElements", ["n", "sd", "nu"], "se_int_add", axis=1, reduction="add"),
    ], {"x": data,
        "gi0": np.array([[0, 2, 1, -1], [1, 1, 0, 0]], np.int64),
        "gi1": np.array([[3, 0], [-1, 1], [2, 2]], np.int64),
        "si": np.array([[0, 3], [-1, 1], [2, 0]], np.int64),
        "sd": np.array([[1, 1], [0, 0], [3, -1]], np.int64),
        "u": f32(g, 3, 2),
        "si0": np.array([[2, 0, -3, 1]], np.int64), "u0": f32(g, 1, 4),
        "n": g.integers(0, 9, (3, 4)).astype(np.int64),
        "nu": g.integers(0, 9, (3, 2)).astype(np.int64)},
        ["ge_axis0", "ge_axis1_neg", "se_none", "se_add", "se_mul", "se_max", "se_min",
         "se_axis0_neg", "se_int_add"],
        opset=18)


_indexing_cases()


#===-----------------------------------------------------------------------===#
# More element types, special values, all-dynamic shapes
#===-----------------------------------------------------------------------===#

def _more_cases():
    g = rng(140)
    a = np.array([[0, 1, 127, 128], [200, 255, 3, 90]], np.uint8)
    b = np.array([[255, 1, 128, 127], [100, 5, 3, 91]], np.uint8)
    case("uint8", [
        node("Add", ["a", "b"], "add_wraps"), node("Sub", ["a", "b"], "sub_wraps"),
        node("Mul", ["a", "b"], "mul_wraps"), node("Div", ["a", "b"], "div_unsigned"),
        node("Max", ["a", "b"], "max"), node("Min", ["a", "b"], "min"),
        node("Less", ["a", "b"], "lt"), node("Greater", ["a", "b"], "gt"),
        node("Equal", ["a", "b"], "eq"), node("Where", ["lt", "a", "b"], "where"),
        node("ReduceMax", ["a"], "reduce_max", keepdims=0),
        # (opset 17: axes as an attribute)
        node("ReduceMin", ["a"], "reduce_min", axes=[1]),
        node("ArgMax", ["a"], "argmax", axis=1), node("ArgMin", ["a"], "argmin", axis=1),
        const("k2", i64(2)), node("TopK", ["a", "k2"], ["top_v", "top_i"]),
        node("Abs", ["a"], "abs"), node("Cast", ["a"], "to_f32", to=TP.FLOAT),
        node("Cast", ["a"], "to_i64", to=TP.INT64),
        const("lo", np.array(100, np.uint8)), node("Clip", ["a", "lo"], "clip"),
    ], {"a": a, "b": b},
        ["add_wraps", "sub_wraps", "mul_wraps", "div_unsigned", "max", "min", "lt", "gt",
         "eq", "where", "reduce_max", "reduce_min", "argmax", "argmin", "top_v", "top_i",
         "abs", "to_f32", "to_i64", "clip"], opset=17)

    # Ties: select_last_index picks the last extreme.
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [5, -1, 5, -1]], np.float32)
    case("argmax_select_last_index", [
        node("ArgMax", ["x"], "max_last", axis=1, select_last_index=1),
        node("ArgMin", ["x"], "min_last", axis=1, select_last_index=1, keepdims=0),
        node("ArgMax", ["x"], "max_first", axis=1),
        node("ArgMax", ["x"], "max_last_axis0", axis=0, select_last_index=1),
        node("ArgMin", ["n"], "min_last_int", axis=-1, select_last_index=1),
    ], {"x": x, "n": np.array([[4, 1, 1, 9, 1]], np.int64)},
        ["max_last", "min_last", "max_first", "max_last_axis0", "min_last_int"], opset=13,
        dynamic={"x"})

    # Infinities and NaNs where ONNX (IEEE) defines them.
    case("special_values", [
        node("Div", ["x", "zero"], "div_by_zero"),
        node("Reciprocal", ["x"], "reciprocal"),
        node("Log", ["p"], "log"), node("Sqrt", ["x"], "sqrt_negative"),
        node("Exp", ["big"], "exp_overflow"), node("Sigmoid", ["big"], "sigmoid"),
        node("Tanh", ["big"], "tanh"), node("Relu", ["big"], "relu"),
        node("Softmax", ["big"], "softmax_large"),
        node("Max", ["x", "inf"], "max_inf"), node("Less", ["x", "inf"], "less_inf"),
        node("Mul", ["big", "big"], "mul_overflow"),
    ], {"x": np.array([-2.0, -0.0, 0.0, 3.0], np.float32),
        "zero": np.array(0.0, np.float32),
        "p": np.array([0.0, 1e-30, 1.0, 1e30], np.float32),
        "big": np.array([-1e4, -100.0, 100.0, 1e4], np.float32),
        "inf": np.array([np.inf, -np.inf, np.inf, -np.inf], np.float32)},
        ["div_by_zero", "reciprocal", "log", "sqrt_negative", "exp_overflow", "sigmoid",
         "tanh", "relu", "softmax_large", "max_inf", "less_inf", "mul_overflow"], opset=13)

    g = rng(141)
    case("clip_runtime_bounds_f16", [
        node("Clip", ["x", "lo", "hi"], "clip_inputs"),
        node("Clip", ["x", "hi", "lo"], "clip_min_above_max"),
        node("Clip", ["h", "hlo"], "clip_f16"),
        node("Pow", ["hp", "h2"], "pow_f16"), node("Mean", ["h", "hp"], "mean_f16"),
        node("Where", ["c", "h", "hp"], "where_f16"),
        node("Div", ["h", "hp"], "div_f16"),
    ], {"x": f32(g, 3, 4), "lo": np.array(-0.3, np.float32), "hi": np.array(0.6, np.float32),
        "h": f32(g, 3, 4).astype(np.float16), "hlo": np.array(0.1, np.float16),
        "hp": g.uniform(0.5, 2, (3, 4)).astype(np.float16),
        "h2": np.array([1.0, 2.0, 0.5, -1.0], np.float16),
        "c": g.integers(0, 2, (3, 1)).astype(np.bool_)},
        ["clip_inputs", "clip_min_above_max", "clip_f16", "pow_f16", "mean_f16", "where_f16",
         "div_f16"], opset=13, dynamic={"x", "h", "hp"})

    # Every dimension dynamic.
    g = rng(142)
    dyn = {"x": ["B", "S", "H"], "y": ["B", "H", "K"], "v": ["H"]}
    case("all_dynamic", [
        const("ax1", i64(1)), const("axm1", i64(-1)),
        node("ReduceSum", ["x", "ax1"], "sum_over_s"),
        node("ReduceMean", ["x"], "mean_all", keepdims=0),
        node("ReduceMax", ["x", "axm1"], "max_h", keepdims=0),
        node("Softmax", ["x"], "softmax_h"), node("Softmax", ["x"], "softmax_s", axis=1),
        node("LayerNormalization", ["x", "v"], "layernorm", axis=-1),
        node("LayerNormalization", ["x", "v"], "layernorm_s_h", axis=1),
        node("MatMul", ["x", "y"], "matmul"),
        node("Transpose", ["x"], "transpose", perm=[2, 0, 1]),
        node("Concat", ["x", "x"], "concat_s", axis=1),
        node("Split", ["x"], ["split_a", "split_b"], axis=1),
        const("st", i64(-2)), const("en", i64(I64_MAX)),
        node("Slice", ["x", "st", "en", "ax1"], "slice_last2_s"),
        # Starts and ends computed from the shape, negative at run time:
        # x[:, 1 - S : S - 5] = x[:, 1:-1] (S = 4).
        node("Shape", ["x"], "xs"), node("Gather", ["xs", "ax1"], "s"),
        const("one", i64(1)), const("five", i64(5)),
        node("Sub", ["one", "s"], "dyn_start"), node("Sub", ["s", "five"], "dyn_end"),
        node("Slice", ["x", "dyn_start", "dyn_end", "ax1"], "slice_dynamic_negative"),
        const("gi", np.array([0, -1], np.int64)),
        node("Gather", ["x", "gi"], "gather_s", axis=1),
        const("k2", i64(2)), node("TopK", ["x", "k2"], ["top_v", "top_i"], axis=1),
        node("ArgMax", ["x"], "argmax_h", axis=-1, keepdims=0),
        node("Add", ["x", "v"], "add_broadcast"),
        node("Flatten", ["x"], "flatten"),
        node("Shape", ["x"], "shape"),
        const("pads", i64(0, -1)), node("Reshape", ["x", "pads"], "reshape_0_m1"),
    ], {"x": f32(g, 2, 4, 6), "y": f32(g, 2, 6, 3), "v": f32(g, 6)},
        ["sum_over_s", "mean_all", "max_h", "softmax_h", "softmax_s", "layernorm",
         "layernorm_s_h", "matmul", "transpose", "concat_s", "split_a", "split_b",
         "slice_last2_s", "slice_dynamic_negative", "gather_s", "top_v", "top_i", "argmax_h", "add_broadcast",
         "flatten", "shape", "reshape_0_m1"],
        opset=18, dynamic=dyn,
        tol={"layernorm_s_h": F32_TOL})

    g = rng(143)
    case("scalars_and_rank_changes", [
        node("Shape", ["s"], "shape_of_scalar"), node("Size", ["s"], "size_of_scalar"),
        const("empty", np.zeros((0,), np.int64)),
        node("Reshape", ["one", "empty"], "to_scalar"),
        const("shape1", i64(1)), node("Reshape", ["s", "shape1"], "from_scalar"),
        node("Squeeze", ["ones11"], "squeeze_to_scalar"),
        const("ax0", i64(0)), node("Unsqueeze", ["s", "ax0"], "unsqueeze_scalar"),
        node("Add", ["s", "x"], "scalar_plus_tensor"),
        node("ReduceSum", ["x"], "sum_to_scalar", keepdims=0),
        node("MatMul", ["v", "v"], "dot"),
        const("sh", i64(3, 1)), node("Expand", ["s", "sh"], "expand_scalar"),
        const("s211", i64(2, 1, 1)), node("Expand", ["x", "s211"], "expand_lower_rank"),
        node("Gather", ["v", "idx0"], "gather_scalar_index"),
    ], {"s": np.array(2.5, np.float32), "one": np.array([7.0], np.float32),
        "ones11": np.array([[3.0]], np.float32), "x": f32(g, 3, 4), "v": f32(g, 5),
        "idx0": np.array(-1, np.int64)},
        ["shape_of_scalar", "size_of_scalar", "to_scalar", "from_scalar",
         "squeeze_to_scalar", "unsqueeze_scalar", "scalar_plus_tensor", "sum_to_scalar",
         "dot", "expand_scalar", "expand_lower_rank", "gather_scalar_index"], opset=13)


    g = rng(144)
    case("bool_data_and_edges", [
        const("s23", i64(2, 3, 4)), node("Expand", ["q", "s23"], "expand_bool"),
        node("Not", ["expand_bool"], "not_expanded"),
        node("Concat", ["p", "q"], "concat_bool", axis=0),
        node("Transpose", ["p"], "transpose_bool"),
        const("st", i64(1)), const("en", i64(3)), const("ax", i64(1)),
        node("Slice", ["p", "st", "en", "ax"], "slice_bool"),
        const("gi", i64(2, 0)), node("Gather", ["p", "gi"], "gather_bool", axis=1),
        node("Cast", ["p"], "bool_to_f16", to=TP.FLOAT16),
        const("flat", i64(-1)), node("Reshape", ["p", "flat"], "reshape_bool"),
        node("Split", ["p"], ["split_bool_a", "split_bool_b"], axis=1, num_outputs=2),
        node("Softmax", ["v"], "softmax_1d"),
        node("LayerNormalization", ["x", "xs"], ["layernorm_axis0", "ln_mean", "ln_inv_std"],
             axis=0),
        const("k4", i64(4)), node("TopK", ["x", "k4"], ["topk_all_v", "topk_all_i"],
                                   largest=0),
        node("Gather", ["x", "si"], "gather_runtime_scalar_index", axis=1),
        node("ReduceSum", ["x"], "reduce_sum_noop_with_empty", noop_with_empty_axes=1),
    ], {"p": g.integers(0, 2, (3, 4)).astype(np.bool_),
        "q": g.integers(0, 2, (3, 4)).astype(np.bool_),
        "v": f32(g, 5), "x": f32(g, 3, 4), "xs": f32(g, 3, 4),
        "si": np.array(-2, np.int64)},
        ["expand_bool", "not_expanded", "concat_bool", "transpose_bool",
         "slice_bool", "gather_bool", "bool_to_f16", "reshape_bool", "split_bool_a",
         "split_bool_b", "softmax_1d", "layernorm_axis0", "ln_mean", "ln_inv_std",
         "topk_all_v", "topk_all_i", "gather_runtime_scalar_index",
         "reduce_sum_noop_with_empty"], opset=18, dynamic={"p", "q"})


_more_cases()


#===-----------------------------------------------------------------------===#
# Blocks as exporters write them
#===-----------------------------------------------------------------------===#

def _block_cases():
    # Multi-head attention as torch.onnx exports it: batch and sequence
    # dynamic, head split/merge through Shape -> Gather -> Unsqueeze -> Concat.
    g = rng(150)
    H, heads = 16, 4
    D = H // heads
    nodes = [
        node("Shape", ["x"], "xs"),
        const("i0", np.array(0, np.int64)), const("i1", np.array(1, np.int64)),
        node("Gather", ["xs", "i0"], "b"), node("Gather", ["xs", "i1"], "s"),
        const("ax0", i64(0)),
        node("Unsqueeze", ["b", "ax0"], "b1"), node("Unsqueeze", ["s", "ax0"], "s1"),
        const("heads_d", i64(heads, D)),
        node("Concat", ["b1", "s1", "heads_d"], "split_shape", axis=0),
        const("m1", i64(-1)), node("Concat", ["b1", "s1", "m1"], "merge_shape", axis=0),
    ]
    for name in ("q", "k", "v"):
        nodes += [node("MatMul", ["x", "w" + name], name + "_lin"),
                  node("Reshape", [name + "_lin", "split_shape"], name + "_4d"),
                  node("Transpose", [name + "_4d"], name + "_h",
                       perm=[0, 2, 3, 1] if name == "k" else [0, 2, 1, 3])]
    nodes += [
        node("MatMul", ["q_h", "k_h"], "scores"),
        # 1 / sqrt(head size), the head size taken from q's shape.
        node("Shape", ["q_h"], "qs"), const("last", np.array(-1, np.int64)),
        node("Gather", ["qs", "last"], "d"), node("Cast", ["d"], "d_f", to=TP.FLOAT),
        node("Sqrt", ["d_f"], "sqrt_d"), node("Div", ["scores", "sqrt_d"], "scaled"),
        # Causal mask from the sequence length: Range -> Unsqueeze -> Less.
        const("z", np.array(0, np.int64)), const("one", np.array(1, np.int64)),
        node("Range", ["z", "s", "one"], "pos"),
        node("Unsqueeze", ["pos", "ax0"], "pos_row"),
        node("Unsqueeze", ["pos", "m1"], "pos_col"),
        node("Less", ["pos_col", "pos_row"], "future"),
        const("neg", np.array(-1e9, np.float32)),
        node("Where", ["future", "neg", "scaled"], "masked"),
        node("Softmax", ["masked"], "probs", axis=-1),
        node("MatMul", ["probs", "v_h"], "ctx"),
        node("Transpose", ["ctx"], "ctx_t", perm=[0, 2, 1, 3]),
        node("Reshape", ["ctx_t", "merge_shape"], "merged"),
        node("MatMul", ["merged", "wo"], "attn"),
        node("Add", ["x", "attn"], "residual0"),
        # Position ids [B, S] = Expand(Range(S)[None], [B, S]) -> embedding.
        node("Concat", ["b1", "s1"], "bs", axis=0),
        node("Expand", ["pos_row", "bs"], "pos_ids"),
        node("Gather", ["pos_table", "pos_ids"], "pos_emb"),
        node("Add", ["residual0", "pos_emb"], "residual"),
        node("LayerNormalization", ["residual", "gamma", "beta"], "out", epsilon=1e-5),
    ]
    case("attention_block", nodes,
         {"x": f32(g, 2, 5, H), "wq": f32(g, H, H, scale=0.3), "wk": f32(g, H, H, scale=0.3),
          "wv": f32(g, H, H, scale=0.3), "wo": f32(g, H, H, scale=0.3),
          "gamma": f32(g, H), "beta": f32(g, H), "pos_table": f32(g, 8, H)},
         ["probs", "merged", "pos_ids", "out"], opset=17, dynamic={"x": ["batch", "seq", None]})

    # An MoE router: softmax, top-k, renormalization, dense routing weights
    # scattered into zeros shaped like the probabilities.
    g = rng(151)
    case("router_block", [
        node("MatMul", ["x", "wg"], "logits"),
        node("Softmax", ["logits"], "probs"),
        const("k", i64(2)), node("TopK", ["probs", "k"], ["top_p", "top_e"]),
        const("axm1", i64(-1)),
        node("ReduceSum", ["top_p", "axm1"], "top_sum"),
        node("Div", ["top_p", "top_sum"], "weights"),
        node("Shape", ["probs"], "ps"),
        node("ConstantOfShape", ["ps"], "zeros"),
        node("ScatterElements", ["zeros", "top_e", "weights"], "dense", axis=1),
        node("GatherElements", ["probs", "top_e"], "gathered", axis=1),
        node("Equal", ["gathered", "top_p"], "consistent"),
        const("e_ids", np.arange(6, dtype=np.int64)),
        node("Unsqueeze", ["top_e", "axm1"], "top_e3"),
        node("Equal", ["top_e3", "e_ids"], "one_hot"),
        node("Cast", ["one_hot"], "one_hot_f", to=TP.FLOAT),
        const("ax1", i64(1)),
        node("ReduceSum", ["one_hot_f", "ax1"], "expert_mask", keepdims=0),
    ], {"x": f32(g, 7, 8), "wg": f32(g, 8, 6)},
        ["probs", "top_p", "top_e", "weights", "dense", "consistent", "expert_mask"],
        opset=18, dynamic={"x"})


_block_cases()


#===-----------------------------------------------------------------------===#
# Einsum
#===-----------------------------------------------------------------------===#

def _einsum_cases():
    def ein(eq, ins, out):
        return node("Einsum", ins, out, equation=eq)

    # Products as models write them: matrix products in every layout (those
    # of two 2-d operands become linalg.matmul), attention scores and
    # values, MoE expert projections and their weighted sum.
    g = rng(180)
    case("einsum_f32", [
        ein("ij,jk->ik", ["A", "B"], "matmul"),
        ein("ik,jk->ij", ["A", "Bt"], "matmul_transposed_b"),
        ein("ki,kj->ij", ["At", "B"], "matmul_transposed_a"),
        ein("jk,ij->ki", ["B", "A"], "matmul_transposed_out"),
        ein("ij,jk", ["A", "B"], "implicit_matmul"),
        ein("bhqd,bhkd->bhqk", ["q", "k"], "attention_scores"),
        ein("bhqk,bhkd->bhqd", ["p", "v"], "attention_values"),
        ein("btd,edh->bteh", ["x", "w"], "expert_projection"),
        ein("bte,bteh->bth", ["r", "y"], "expert_weighted_sum"),
        ein("bij->bji", ["T"], "transpose"),
        ein("ij->", ["A"], "sum_all"),
        ein("ij->j", ["A"], "sum_rows"),
        ein("bij,bjk->", ["T", "U"], "contract_everything"),
        ein("ij,jk,kl->il", ["A", "B", "C"], "three_operands"),
        ein("i,j,k->ijk", ["u", "u2", "u3"], "outer_product"),
        ein("bi,bi,bi->b", ["M", "M", "M"], "repeated_operand"),
        ein("ij,ij->ij", ["A", "A"], "hadamard"),
        ein("ba", ["A"], "implicit_transpose"),
        ein("ij,ji", ["A", "At"], "implicit_trace_of_product"),
        ein("aB,Bc->ac", ["A", "B"], "mixed_case"),
        ein("i,->i", ["u", "s"], "scalar_operand"),
    ], {"A": f32(g, 3, 4), "B": f32(g, 4, 5), "Bt": f32(g, 5, 4), "At": f32(g, 4, 3),
        "C": f32(g, 5, 2), "q": f32(g, 2, 3, 4, 8), "k": f32(g, 2, 3, 6, 8),
        "p": f32(g, 2, 3, 4, 6), "v": f32(g, 2, 3, 6, 8), "x": f32(g, 2, 5, 6),
        "w": f32(g, 3, 6, 4), "r": f32(g, 2, 5, 3), "y": f32(g, 2, 5, 3, 4),
        "T": f32(g, 2, 3, 4), "U": f32(g, 2, 4, 3), "u": f32(g, 3), "u2": f32(g, 2),
        "u3": f32(g, 4), "M": f32(g, 6, 3), "s": np.array(1.5, np.float32)},
        ["matmul", "matmul_transposed_b", "matmul_transposed_a", "matmul_transposed_out",
         "implicit_matmul", "attention_scores", "attention_values", "expert_projection",
         "expert_weighted_sum", "transpose", "sum_all", "sum_rows", "contract_everything",
         "three_operands", "outer_product", "repeated_operand", "hadamard",
         "implicit_transpose", "implicit_trace_of_product", "mixed_case", "scalar_operand"],
        opset=13)

    # Dynamic batch, sequence and head dimensions (one dim_param each).
    g = rng(181)
    case("einsum_dynamic", [
        ein("bhqd,bhkd->bhqk", ["q", "k"], "attention_scores"),
        ein("bhqk,bhkd->bhqd", ["p", "v"], "attention_values"),
        ein("btd,edh->bteh", ["x", "w"], "expert_projection"),
        ein("td,ed->te", ["h", "wr"], "router_x_wt"),
        ein("bte,bteh->bth", ["r", "y"], "expert_weighted_sum"),
        ein("...d,...d->...", ["h", "h"], "ellipsis_dot"),
        ein("b...,b...->...b", ["x", "x"], "ellipsis_trailing"),
    ], {"q": f32(g, 2, 3, 4, 8), "k": f32(g, 2, 3, 6, 8), "p": f32(g, 2, 3, 4, 6),
        "v": f32(g, 2, 3, 6, 8), "x": f32(g, 2, 5, 6), "w": f32(g, 3, 6, 4),
        "h": f32(g, 5, 6), "wr": f32(g, 3, 6), "r": f32(g, 2, 5, 3), "y": f32(g, 2, 5, 3, 4)},
        ["attention_scores", "attention_values", "expert_projection", "router_x_wt",
         "expert_weighted_sum", "ellipsis_dot", "ellipsis_trailing"],
        opset=17, dynamic={"q": ["B", "H", "Q", None], "k": ["B", "H", "K", None],
                           "p": ["B", "H", "Q", "K"], "v": ["B", "H", "K", None],
                           "x": ["B", "T", None], "w": ["E", None, None],
                           "h": ["T", None], "wr": ["E", None],
                           "r": ["B", "T", "E"], "y": ["B", "T", "E", None]})

    # "..." with broadcasting, diagonals, sums over a subscript of one
    # operand, subscripts of size 1 that broadcast.
    g = rng(182)
    case("einsum_ellipsis_diagonal_broadcast", [
        ein("...ij,...jk->...ik", ["e1", "e2"], "ellipsis_batched_matmul"),
        ein("...ij->...ji", ["e1"], "ellipsis_transpose"),
        ein("i...j,j...k->...ik", ["m1", "m2"], "ellipsis_middle"),
        ein("ij...,jk...->ik", ["A", "B"], "empty_ellipsis"),
        ein("ii->i", ["S"], "diagonal"),
        ein("ii", ["S"], "trace"),
        ein("bii->b", ["D"], "batched_trace"),
        ein("iij->j", ["D2"], "diagonal_summed"),
        ein("iji->ij", ["D3"], "diagonal_kept"),
        ein("ij,jk->ik", ["A1", "B"], "broadcast_contracted_subscript"),
        ein("ij,ij->ij", ["c1", "A"], "broadcast_output_subscript"),
        ein("bij,bjk->bik", ["b1", "T"], "broadcast_batch_subscript"),
        ein("ijk->ik", ["T"], "sum_middle"),
    ], {"e1": f32(g, 2, 1, 3, 4), "e2": f32(g, 1, 5, 4, 2), "m1": f32(g, 3, 2, 4),
        "m2": f32(g, 4, 2, 5), "A": f32(g, 3, 4), "B": f32(g, 4, 5), "S": f32(g, 4, 4),
        "D": f32(g, 2, 3, 3), "D2": f32(g, 3, 3, 2), "D3": f32(g, 3, 2, 3),
        "A1": f32(g, 3, 1), "c1": f32(g, 3, 1), "b1": f32(g, 1, 3, 3), "T": f32(g, 2, 3, 4)},
        ["ellipsis_batched_matmul", "ellipsis_transpose", "ellipsis_middle", "empty_ellipsis",
         "diagonal", "trace", "batched_trace", "diagonal_summed", "diagonal_kept",
         "broadcast_contracted_subscript", "broadcast_output_subscript",
         "broadcast_batch_subscript", "sum_middle"], opset=17)

    # f16 (accumulated in f32, rounded once) and integers.
    g = rng(183)
    case("einsum_f16_int", [
        ein("ij,jk->ik", ["a", "b"], "matmul_f16"),
        ein("ik,jk->ij", ["a", "bt"], "matmul_transposed_b_f16"),
        ein("bhqd,bhkd->bhqk", ["q", "k"], "attention_scores_f16"),
        ein("ij->j", ["a"], "sum_rows_f16"),
        ein("ij,jk->ik", ["i", "j"], "matmul_i32"),
        ein("bij,bjk->bik", ["l", "m"], "batched_i64"),
        ein("ij->i", ["l2"], "sum_i64"),
    ], {"a": f32(g, 3, 8).astype(np.float16), "b": f32(g, 8, 5).astype(np.float16),
        "bt": f32(g, 5, 8).astype(np.float16), "q": f32(g, 2, 2, 3, 8).astype(np.float16),
        "k": f32(g, 2, 2, 4, 8).astype(np.float16),
        "i": g.integers(-9, 9, (3, 4)).astype(np.int32),
        "j": g.integers(-9, 9, (4, 2)).astype(np.int32),
        "l": g.integers(-9, 9, (2, 3, 4)).astype(np.int64),
        "m": g.integers(-9, 9, (2, 4, 5)).astype(np.int64),
        "l2": g.integers(-9, 9, (3, 4)).astype(np.int64)},
        ["matmul_f16", "matmul_transposed_b_f16", "attention_scores_f16", "sum_rows_f16",
         "matmul_i32", "batched_i64", "sum_i64"], opset=17, dynamic={"a", "q", "k", "l"})


_einsum_cases()


#===-----------------------------------------------------------------------===#
# Broadcasting dynamic dimensions that are 1 when the model runs
#===-----------------------------------------------------------------------===#

def _runtime_broadcast_cases():
    # Each pair: two dimensions the importer cannot prove equal (different
    # dim_params, no dim_param, or dynamic against static), one of which is
    # 1 at run time: numpy broadcasting must happen then.
    g = rng(190)
    case("broadcast_dynamic_size_one", [
        node("Add", ["a1", "bn"], "dyn1_plus_dynN"),
        node("Sub", ["bn", "a1"], "dynN_minus_dyn1"),
        node("Mul", ["c1", "sN"], "dyn1_times_staticN"),
        node("Div", ["sN", "c1"], "staticN_over_dyn1"),
        node("Add", ["u1", "bn"], "unknown1_plus_dynN"),
        node("Add", ["bn", "u1"], "dynN_plus_unknown1"),
        node("Add", ["bn", "eq"], "equal_dynamic"),
        node("Add", ["bn", "bn2"], "same_dim_param"),
        node("Mul", ["a1", "r4"], "dyn1_times_lower_rank"),
        node("Add", ["a1", "col"], "dyn1_plus_dyn_column"),
        node("Where", ["cond", "a1", "bn"], "where_three_dynamic"),
        node("Max", ["a1", "bn", "u1"], "max_three_dynamic"),
        node("Equal", ["i1", "iN"], "equal_int_dyn1"),
    ], {"a1": f32(g, 1, 4), "bn": f32(g, 3, 4), "c1": f32(g, 1, 4),
        "sN": away_from_zero(g, (3, 4)), "u1": f32(g, 1, 4), "eq": f32(g, 3, 4),
        "bn2": f32(g, 3, 4), "r4": f32(g, 4), "col": f32(g, 3, 1),
        "cond": g.integers(0, 2, (3, 1)).astype(np.bool_),
        "i1": g.integers(0, 3, (1, 5)).astype(np.int64),
        "iN": g.integers(0, 3, (2, 5)).astype(np.int64)},
        ["dyn1_plus_dynN", "dynN_minus_dyn1", "dyn1_times_staticN", "staticN_over_dyn1",
         "unknown1_plus_dynN", "dynN_plus_unknown1", "equal_dynamic", "same_dim_param",
         "dyn1_times_lower_rank", "dyn1_plus_dyn_column", "where_three_dynamic",
         "max_three_dynamic", "equal_int_dyn1"],
        opset=17, dynamic={"a1": ["A", None], "bn": ["B", None], "c1": ["C", None],
                           "u1": ["?", None], "eq": ["E", None], "bn2": ["B", None],
                           "col": ["D", None], "cond": ["F", None],
                           "i1": ["I", None], "iN": ["J", None]})

    # Both dimensions dynamic, the size 1 on either side, in every position
    # of a 3-d broadcast.
    g = rng(191)
    case("broadcast_dynamic_3d", [
        node("Add", ["x", "y"], "x_plus_y"), node("Mul", ["y", "x"], "y_times_x"),
        node("Sub", ["x", "z"], "x_minus_z"),
    ], {"x": f32(g, 2, 1, 4), "y": f32(g, 1, 3, 4), "z": f32(g, 2, 3, 1)},
        ["x_plus_y", "y_times_x", "x_minus_z"], opset=17,
        dynamic={"x": ["X0", "X1", "X2"], "y": ["Y0", "Y1", "Y2"], "z": ["?", "?", "?"]})

    # Other operators that broadcast: Expand to a shape computed at run time,
    # MatMul's batch dimensions, Einsum's subscripts, and f16.
    g = rng(192)
    case("broadcast_dynamic_ops", [
        node("Shape", ["t1"], "t1_shape"), node("Expand", ["xn", "t1_shape"], "expand_keeps_n"),
        node("Shape", ["xn"], "xn_shape"), node("Expand", ["t1", "xn_shape"], "expand_ones"),
        node("MatMul", ["ma", "mb"], "matmul_batch_one_left"),
        node("MatMul", ["mb2", "ma2"], "matmul_batch_one_right"),
        node("Einsum", ["ma", "mb"], "einsum_batch_one", equation="bij,bjk->bik"),
        node("Add", ["h1", "hn"], "add_f16"),
    ], {"t1": f32(g, 1, 4), "xn": f32(g, 3, 4), "ma": f32(g, 1, 2, 3), "mb": f32(g, 5, 3, 4),
        "mb2": f32(g, 5, 2, 3), "ma2": f32(g, 1, 3, 4),
        "h1": f32(g, 1, 6).astype(np.float16), "hn": f32(g, 4, 6).astype(np.float16)},
        ["expand_keeps_n", "expand_ones", "matmul_batch_one_left", "matmul_batch_one_right",
         "einsum_batch_one", "add_f16"], opset=17,
        dynamic={"t1": ["P", None], "xn": ["Q", None], "ma": ["M", None, None],
                 "mb": ["N", None, None], "mb2": ["N2", None, None],
                 "ma2": ["M2", None, None], "h1": ["H1", None], "hn": ["H2", None]})


_runtime_broadcast_cases()


def _initializer_cases():
    # Initializers over 256 elements are not embedded: moe-run binds them
    # from the .onnx file at run time.
    g = rng(170)
    case("large_initializers", [
        node("MatMul", ["x", "w"], "matmul_f32_weight"),
        node("Gather", ["emb", "ids"], "embedding_rows"),
        node("Gather", ["table_i64", "ids"], "i64_table_rows"),
        node("Gather", ["table_i32", "ids"], "i32_table_rows"),
        node("MatMul", ["h", "w16"], "matmul_f16_weight"),
        node("Gather", ["mask_u8", "ids"], "u8_rows"),
        node("Gather", ["mask_bool", "ids"], "bool_rows"),
    ], {"x": f32(g, 3, 32), "ids": np.array([[1, 5], [299, 0]], np.int64),
        "h": f32(g, 2, 32).astype(np.float16)},
        ["matmul_f32_weight", "embedding_rows", "i64_table_rows", "i32_table_rows",
         "matmul_f16_weight", "u8_rows", "bool_rows"],
        opset=17, dynamic={"x", "h"},
        inits={"w": f32(g, 32, 16), "emb": f32(g, 300, 4),
               "table_i64": g.integers(-10 ** 12, 10 ** 12, (300, 2)),
               "table_i32": g.integers(-1000, 1000, (300, 3)).astype(np.int32),
               "w16": f32(g, 32, 16).astype(np.float16),
               "mask_u8": g.integers(0, 256, (300, 2)).astype(np.uint8),
               "mask_bool": g.integers(0, 2, (300, 2)).astype(np.bool_)})


_initializer_cases()


# The same models at opset 21 (and 13 for those written for a later opset)
# where the operators' signatures allow it.
for _name in ["binary_f32_broadcast_dynamic", "binary_int", "compare_logic_where", "clip",
              "cast", "matmul_f32", "gemm", "softmax", "topk_argmax", "gather", "slice",
              "transpose_expand_concat", "shape_chains", "constants", "layernorm",
              "unary_f32_static", "variadic", "gather_scatter_elements",
              "attention_block"]:
    _c = next(c for c in CASES if c.name == _name)
    case(f"{_name}_opset21", _c.nodes, _c.feeds, _c.outputs, opset=21, inits=_c.inits,
         dynamic=_c.dynamic, tol=_c.tol)


#===-----------------------------------------------------------------------===#
# Running and comparing
#===-----------------------------------------------------------------------===#

def sanitize(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def check_tool(path, what):
    assert os.path.isfile(path) and os.access(path, os.X_OK), (
        f"{what} not found at {path}: build it or set ${what.upper().replace('-', '_')}")


def moe_run(model, feeds, tmp):
    """Runs moe-run; returns (CompletedProcess, {output file stem: array})."""
    check_tool(MOE_RUN, "moe-run")
    out_dir = os.path.join(tmp, "out")
    os.makedirs(out_dir, exist_ok=True)
    args = [MOE_RUN, model, "--output-dir", out_dir]
    for name, value in feeds.items():
        path = os.path.join(tmp, sanitize(name) + ".in.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    outs = {}
    for f in sorted(os.listdir(out_dir)):
        if f.endswith(".npy"):
            outs[f[:-4]] = np.load(os.path.join(out_dir, f))
    return proc, outs


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("onnx_ops_models"))
    for c in CASES:
        c.save(d)
    return d


@pytest.fixture(scope="session")
def ort_results(models_dir):
    """ORT's outputs for every case (one node process for all of them):
    name -> {output: array} or OrtError."""
    reason = ort_runner.unavailable_reason()
    if reason is not None:
        pytest.skip(f"ONNX Runtime unavailable, the ORT comparisons are skipped: {reason}")
    results = ort_runner.run_many([(c.path, c.feeds) for c in CASES])
    return {c.name: (r if isinstance(r, Exception) else r[0]) for c, r in zip(CASES, results)}


def expected_dtype(ort_dtype):
    """The dtype moe-run writes for a result ORT returns as `ort_dtype`
    (moe-run writes signed 8-bit results as uint8; the cases have none)."""
    return np.dtype(np.uint8) if ort_dtype == np.int8 else np.dtype(ort_dtype)


def compare(c, name, ours, ref):
    """A list of problems with output `name`, empty when it matches."""
    want = expected_dtype(ref.dtype)
    if ours.dtype != want:
        return [f"{name}: dtype {ours.dtype}, ORT {ref.dtype} (expected {want} from moe-run)"]
    if ours.shape != ref.shape:
        return [f"{name}: shape {ours.shape}, ORT {ref.shape}"]
    if ref.dtype.kind in "iub":
        bad = np.argwhere(ours != ref)
        if len(bad):
            i = tuple(bad[0])
            return [f"{name}: {len(bad)} of {ref.size} elements differ, first at {list(i)}: "
                    f"ours {ours[i]}, ORT {ref[i]}\n  ours {ours.ravel()[:12]}\n"
                    f"  ORT  {ref.ravel()[:12]}"]
        return []
    tol = c.tol.get(name, F16_TOL if ref.dtype == np.float16 else F32_TOL)
    r = ref.astype(np.float64)
    o = ours.astype(np.float64)
    if not np.all(np.isfinite(r)) or not np.all(np.isfinite(o)):
        if not np.array_equal(r[~np.isfinite(r)], o[~np.isfinite(r)], equal_nan=True):
            return [f"{name}: non-finite values differ\n  ours {o.ravel()[:12]}\n"
                    f"  ORT  {r.ravel()[:12]}"]
        finite = np.isfinite(r)
        r, o = r[finite], o[finite]
    if r.size == 0:
        return []
    scale = np.max(np.abs(r)) or 1.0
    err = np.max(np.abs(o - r))
    if err > tol * scale:
        return [f"{name}: max|ours - ORT| = {err:.3g} > {tol:g} * max|ORT| ({scale:.3g})\n"
                f"  ours {o.ravel()[:8]}\n  ORT  {r.ravel()[:8]}"]
    return []


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_matches_onnxruntime(c, models_dir, ort_results, tmp_path):
    ref = ort_results[c.name]
    if isinstance(ref, Exception):
        pytest.fail(f"ONNX Runtime rejects the test model {c.name}: {ref}")
    proc, ours = moe_run(c.path, c.feeds, str(tmp_path))
    assert proc.returncode == 0, f"moe-run failed (exit {proc.returncode}):\n{proc.stderr}"
    problems = []
    for name in c.outputs:
        stem = sanitize(name)
        if stem not in ours:
            problems.append(f"{name}: moe-run wrote no {stem}.npy")
            continue
        problems += compare(c, name, ours[stem], ref[name])
    assert not problems, f"{len(problems)} of {len(c.outputs)} outputs differ:\n" + \
        "\n".join(problems)


#===-----------------------------------------------------------------------===#
# Errors
#===-----------------------------------------------------------------------===#

def error_model(nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(nodes, "errors", inputs,
                              [helper.make_empty_tensor_value_info(o) for o in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = _IR[opset]
    return m


def loop_model():
    body = helper.make_graph(
        [node("Identity", ["cond_in"], "cond_out"), node("Add", ["v_in", "v_in"], "v_out")],
        "body",
        [helper.make_tensor_value_info("iter", TP.INT64, []),
         helper.make_tensor_value_info("cond_in", TP.BOOL, []),
         helper.make_tensor_value_info("v_in", TP.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TP.BOOL, []),
         helper.make_tensor_value_info("v_out", TP.FLOAT, [2])])
    return error_model(
        [node("Relu", ["x"], "r"), const("trip", np.array(3, np.int64)),
         const("cond", np.array(True)),
         node("Loop", ["trip", "cond", "r"], "y", name="the_loop", body=body)],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])], ["y"])


def unknown_op_model():
    return error_model(
        [node("Relu", ["x"], "r"), node("FrobnicateTensor", ["r"], "y", name="frob")],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])], ["y"])


def data_dependent_reshape_model():
    # The target shape is computed from x's values: [int(max(x)), -1].
    return error_model(
        [node("ReduceMax", ["x"], "m", keepdims=1, axes=[0, 1]),
         node("Cast", ["m"], "mi", to=TP.INT64),
         const("one", i64(1)), node("Reshape", ["mi", "one"], "n"),
         const("m1", i64(-1)), node("Concat", ["n", "m1"], "shape", axis=0),
         node("Reshape", ["x", "shape"], "y", name="data_reshape")],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2, 3])], ["y"], opset=17)


def input_shape_reshape_model():
    return error_model(
        [node("Reshape", ["x", "shape"], "y", name="input_reshape")],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2, 3]),
         helper.make_tensor_value_info("shape", TP.INT64, [2])], ["y"])


def data_dependent_model(op_nodes, name):
    """`op_nodes` read "shape", an int64 [2] computed from x's values."""
    return error_model(
        [node("Abs", ["x"], "ax"), node("Cast", ["ax"], "xi", to=TP.INT64),
         const("zero", i64(0)), node("Gather", ["xi", "zero"], "shape", axis=0)] + op_nodes,
        [helper.make_tensor_value_info("x", TP.FLOAT, [2, 2])], [name])


# (id, model builder, feeds, patterns the one-line error must contain)
ERRORS = [
    ("constant_of_shape_data_dependent",
     lambda: data_dependent_model([node("ConstantOfShape", ["shape"], "y", name="cos")], "y"),
     {"x": np.ones((2, 2), np.float32)}, ["'cos'", "ConstantOfShape", "shape"]),
    ("expand_data_dependent",
     lambda: data_dependent_model([node("Expand", ["x", "shape"], "y", name="exp")], "y"),
     {"x": np.ones((2, 2), np.float32)}, ["'exp'", "Expand", "shape"]),
    ("topk_data_dependent_k",
     lambda: data_dependent_model([const("one", i64(1)),
                                   node("Slice", ["shape", "zero", "one"], "k"),
                                   node("TopK", ["x", "k"], ["y", "yi"], name="topk")], "y"),
     {"x": np.ones((2, 2), np.float32)}, ["'topk'", "TopK", "K"]),
    ("slice_runtime_steps",
     lambda: error_model([const("st", i64(0)), const("en", i64(2)), const("ax", i64(0)),
                          node("Slice", ["x", "st", "en", "ax", "steps"], "y", name="sl")],
                         [helper.make_tensor_value_info("x", TP.FLOAT, [4]),
                          helper.make_tensor_value_info("steps", TP.INT64, [1])], ["y"]),
     {"x": np.ones(4, np.float32), "steps": i64(1)}, ["'sl'", "Slice", "steps"]),
    ("reduce_axes_attribute_at_opset18",
     lambda: error_model([node("ReduceMean", ["x"], "y", name="rm", axes=[0])],
                         [helper.make_tensor_value_info("x", TP.FLOAT, [2, 2])], ["y"],
                         opset=18),
     {"x": np.ones((2, 2), np.float32)}, ["'rm'", "ReduceMean", "axes", "opset 18"]),
    ("split_uneven_opset13",
     lambda: error_model([node("Split", ["x"], ["a", "b", "c"], name="sp", axis=0)],
                         [helper.make_tensor_value_info("x", TP.FLOAT, [7])], ["a"], opset=13),
     {"x": np.ones(7, np.float32)}, ["'sp'", "Split", "7", "3"]),
    ("split_too_many_parts_opset18",
     lambda: error_model([node("Split", ["x"], ["a", "b", "c", "d"], name="sp", num_outputs=4)],
                         [helper.make_tensor_value_info("x", TP.FLOAT, [6])], ["a"], opset=18),
     {"x": np.ones(6, np.float32)}, ["'sp'", "Split", "6", "4"]),
    ("gelu_bad_approximate",
     lambda: error_model([node("Gelu", ["x"], "y", name="gelu", approximate="fast")],
                         [helper.make_tensor_value_info("x", TP.FLOAT, [4])], ["y"], opset=20),
     {"x": np.ones(4, np.float32)}, ["'gelu'", "Gelu", "approximate"]),

    ("squeeze_no_axes_dynamic",
     lambda: error_model([node("Squeeze", ["x"], "y", name="sq")],
                         [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 1, 4])], ["y"]),
     {"x": np.ones((1, 1, 4), np.float32)}, ["'sq'", "Squeeze", "dynamic", "give axes"]),
] + [
    (f"einsum_{name}",
     (lambda eq=eq, shapes=shapes, attrs=attrs: error_model(
         [node("Einsum", [f"x{i}" for i in range(len(shapes))], "y", name="ein",
               **({"equation": eq} if eq is not None else {}), **attrs)],
         [helper.make_tensor_value_info(f"x{i}", TP.FLOAT, s) for i, s in enumerate(shapes)],
         ["y"])),
     {f"x{i}": np.ones(s, np.float32) for i, s in enumerate(shapes)},
     ["'ein'", "Einsum"] + patterns)
    for name, eq, shapes, attrs, patterns in [
        ("too_few_inputs", "ij,jk->ik", [(2, 3)], {}, ["2 input terms for 1 input"]),
        ("too_many_inputs", "ij->ji", [(2, 3), (3, 2)], {}, ["1 input term for 2 inputs"]),
        ("rank_mismatch", "ijk,jk->ik", [(2, 3), (3, 4)], {}, ["'ijk'", "input 0", "[2, 3]"]),
        ("rank_too_small_for_ellipsis", "...ijk->k", [(2, 3)], {}, ["'...ijk'", "input 0"]),
        ("size_conflict", "ij,jk->ik", [(2, 3), (4, 5)], {},
         ["subscript 'j'", "3 in input 0", "4 in input 1"]),
        ("ellipsis_conflict", "...i,...i->...", [(2, 3), (4, 3)], {},
         ["'...' dimension 0", "2 in input 0", "4 in input 1"]),
        ("diagonal_sizes_differ", "ii->i", [(2, 3)], {}, ["subscript 'i'", "2 and 3"]),
        ("invalid_character", "i1,1j->ij", [(2, 3), (3, 2)], {}, ["invalid character '1'"]),
        ("two_dots", "..i->i", [(2, 3)], {}, ["three dots"]),
        ("output_not_in_inputs", "ij->k", [(2, 3)], {}, ["output subscript 'k'", "no input"]),
        ("output_repeated", "ij->ii", [(2, 2)], {}, ["output subscript 'i'", "repeated"]),
        ("ellipsis_dropped", "...ij->ij", [(4, 2, 3)], {}, ["'...'", "output"]),
        ("two_arrows", "ij->j->j", [(2, 3)], {}, ["'->'"]),
        ("no_equation", None, [(2, 3)], {}, ["equation"]),
    ]
] + [
    ("loop", loop_model, {"x": np.ones(2, np.float32)}, ["'the_loop'", "Loop"]),
    ("unknown_op", unknown_op_model, {"x": np.ones(2, np.float32)},
     ["'frob'", "FrobnicateTensor"]),
    ("data_dependent_reshape", data_dependent_reshape_model, {"x": np.ones((2, 3), np.float32)},
     ["'data_reshape'", "Reshape", "shape"]),
    ("input_shape_reshape", input_shape_reshape_model,
     {"x": np.ones((2, 3), np.float32), "shape": i64(3, 2)},
     ["'input_reshape'", "Reshape", "shape"]),
]


@pytest.mark.parametrize("name,build,feeds,patterns", ERRORS, ids=[e[0] for e in ERRORS])
def test_error(name, build, feeds, patterns, tmp_path):
    model = str(tmp_path / f"{name}.onnx")
    onnx.save(build(), model)
    proc, outs = moe_run(model, feeds, str(tmp_path))
    assert proc.returncode not in (0,) and proc.returncode > 0, (
        f"moe-run exit {proc.returncode}; stderr:\n{proc.stderr}")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    for p in patterns:
        assert p in lines[0], f"'{p}' missing from the error: {lines[0]}"
    assert not outs, f"moe-run wrote outputs despite failing: {sorted(outs)}"
    # moe-import reports the same error.
    check_tool(MOE_IMPORT, "moe-import")
    imp = subprocess.run([MOE_IMPORT, model, "-o", str(tmp_path / "out.mlir")],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert imp.returncode > 0, f"moe-import exit {imp.returncode}: {imp.stderr}"
    imp_lines = [ln for ln in imp.stderr.splitlines() if ln.strip()]
    assert len(imp_lines) == 1 and all(p in imp_lines[0] for p in patterns), imp.stderr


#===-----------------------------------------------------------------------===#
# What the importer emits for broadcasting and Einsum
#===-----------------------------------------------------------------------===#

def moe_import(model, tmp_path):
    check_tool(MOE_IMPORT, "moe-import")
    out = str(tmp_path / (os.path.basename(model) + ".mlir"))
    proc = subprocess.run([MOE_IMPORT, model, "-o", out], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return f.read()


def test_broadcast_known_equal_sizes_stay_affine(tmp_path):
    """Dynamic sizes known to be equal (one dim_param, or one value's
    dimension through the ops between) broadcast through affine maps only;
    sizes that may differ are read at a clamped index."""
    fast = Case("broadcast_fast", [
        node("Add", ["x", "y"], "same_dim_param"),
        node("Relu", ["x"], "r"), node("Mul", ["x", "r"], "same_value"),
        node("Softmax", ["x"], "softmax"),
        node("ReduceMean", ["x"], "m", axes=[-1]), node("Sub", ["x", "m"], "centered"),
        node("MatMul", ["x3", "w3"], "batched_same_dim_param"),
        node("Einsum", ["x3", "w3"], "einsum_same_dim_param", equation="bij,bjk->bik"),
        # B·T computed three ways (Reshape to [-1, 4] twice, Flatten).
        const("m14", i64(-1, 4)), node("Reshape", ["x3", "m14"], "flat"),
        node("Relu", ["x3"], "r3"), node("Reshape", ["r3", "m14"], "flat2"),
        node("Flatten", ["x3"], "flat3", axis=2),
        node("Add", ["flat", "flat2"], "flattened_twice"),
        node("Mul", ["flat2", "flat3"], "flatten_and_reshape"),
    ], {"x": f32(rng(0), 3, 4), "y": f32(rng(1), 3, 4), "x3": f32(rng(2), 2, 3, 4),
        "w3": f32(rng(3), 2, 4, 5)},
        ["same_dim_param", "same_value", "softmax", "centered", "batched_same_dim_param",
         "einsum_same_dim_param", "flattened_twice", "flatten_and_reshape"],
        dynamic={"x": ["N", None], "y": ["N", None], "x3": ["B", "T", None],
                 "w3": ["B", None, None]})
    text = moe_import(fast.save(str(tmp_path)), tmp_path)
    for op in ("tensor.extract ", "arith.minui", "arith.maxui"):
        assert op not in text, f"{op} in the import of sizes known to be equal:\n{text}"
    slow = Case("broadcast_runtime", [node("Add", ["x", "z"], "different_dim_params")],
                {"x": f32(rng(0), 3, 4), "z": f32(rng(1), 3, 4)}, ["different_dim_params"],
                dynamic={"x": ["N", None], "z": ["M", None]})
    text = moe_import(slow.save(str(tmp_path)), tmp_path)
    for op in ("tensor.extract ", "arith.minui", "arith.maxui"):
        assert op in text, f"no {op} in the import of sizes that may differ:\n{text}"


def test_einsum_matrix_products_are_matmuls(tmp_path):
    """Two 2-d operands with one summed subscript become linalg.matmul (the
    x·Wᵀ layout with the maps the vectorized kernel takes); other equations
    one linalg.generic."""
    c = Case("einsum_forms", [
        node("Einsum", ["a", "wt"], "xwt", equation="td,ed->te"),
    ], {"a": f32(rng(0), 3, 4), "wt": f32(rng(1), 5, 4)}, ["xwt"], dynamic={"a"})
    text = moe_import(c.save(str(tmp_path)), tmp_path)
    assert "linalg.matmul" in text and "linalg.generic" not in text, text
    assert re.search(r"affine_map<\(d0, d1, d2\) -> \(d1, d2\)>", text), text
    c = Case("einsum_generic", [
        node("Einsum", ["q", "k"], "s", equation="bhqd,bhkd->bhqk"),
    ], {"q": f32(rng(0), 2, 3, 4, 8), "k": f32(rng(1), 2, 3, 6, 8)}, ["s"])
    text = moe_import(c.save(str(tmp_path)), tmp_path)
    assert text.count("linalg.generic") == 1 and "linalg.matmul" not in text, text
    assert '"parallel", "parallel", "parallel", "parallel", "reduction"' in text, text


# Equations ONNX Runtime does not take (an implicit output with upper-case
# subscripts, "..." of different ranks): compared with numpy.einsum.
NUMPY_EINSUM = [
    ("aB,c", [(2, 3), (4,)]),
    ("Ab,bC", [(2, 3), (3, 4)]),
    ("...i,...i->...", [(2, 1, 3), (4, 3)]),
    ("...ij,jk", [(2, 2, 3), (3, 4)]),
    ("i...,i...->i...", [(2, 3), (2, 4, 3)]),
]


@pytest.mark.parametrize("eq,shapes", NUMPY_EINSUM, ids=[e[0] for e in NUMPY_EINSUM])
def test_einsum_against_numpy(eq, shapes, tmp_path):
    g = rng(200)
    feeds = {f"x{i}": f32(g, *s) for i, s in enumerate(shapes)}
    c = Case("einsum_numpy", [node("Einsum", list(feeds), "y", equation=eq)], feeds, ["y"])
    proc, ours = moe_run(c.save(str(tmp_path)), feeds, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    want = np.einsum(eq, *feeds.values())
    assert ours["y"].shape == want.shape, (ours["y"].shape, want.shape)
    assert np.max(np.abs(ours["y"] - want), initial=0) <= 1e-5 * max(np.max(np.abs(want)), 1)


#===-----------------------------------------------------------------------===#
# Results sharing one buffer
#===-----------------------------------------------------------------------===#

# The same value returned as two graph outputs (or two computations CSE
# merges) comes back as one buffer; both outputs must be copied before it is
# freed. Run a few times: a read after free only shows up now and then.
def test_same_value_as_two_outputs(tmp_path):
    g = rng(160)
    feeds = {"a": f32(g, 64, 32), "b": f32(g, 32, 48)}
    c = Case("duplicate_outputs", [node("MatMul", ["a", "b"], "p1"),
                                   node("MatMul", ["a", "b"], "p2")], feeds, ["p1", "p2"])
    c.save(str(tmp_path))
    want = feeds["a"] @ feeds["b"]
    for i in range(4):
        proc, ours = moe_run(c.path, feeds, str(tmp_path / f"run{i}"))
        assert proc.returncode == 0, proc.stderr
        for name in ("p1", "p2"):
            err = np.max(np.abs(ours[name] - want))
            assert err <= 1e-4 * np.max(np.abs(want)), f"run {i}: {name} is off by {err:.3g}"
