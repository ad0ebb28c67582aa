"""Writes the malformed or unsupported ONNX models of bad-input.test into
OUT_DIR: an unsupported operator, a truncated file, external data that is
missing, a Reshape whose shape depends on input values, an opset that is
too old and a graph output of a type a model cannot return (float64)."""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def main(out):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    onnx.save(model([helper.make_node("Relu", ["x"], ["h"]),
                     helper.make_node("NotAnOp", ["h"], ["y"], name="mystery")],
                    [x], [y]), os.path.join(out, "unsupported.onnx"))
    full = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y],
                 [numpy_helper.from_array(np.ones((4, 64), np.float32), "w")])
    data = full.SerializeToString()
    with open(os.path.join(out, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])
    ext_dir = os.path.join(out, "ext")
    os.makedirs(ext_dir, exist_ok=True)
    onnx.save(full, os.path.join(ext_dir, "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    os.remove(os.path.join(ext_dir, "weights.bin"))
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2])
    onnx.save(model([helper.make_node("Reshape", ["x", "ids"], ["y"], name="dyn")],
                    [x, ids], [y]), os.path.join(out, "data-shape.onnx"))
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=9),
              os.path.join(out, "old-opset.onnx"))
    y64 = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["T", 4])
    onnx.save(model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)],
                    [x], [y64]), os.path.join(out, "f64-output.onnx"))


if __name__ == "__main__":
    main(sys.argv[1])
