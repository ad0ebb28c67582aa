"""Smoke test of the moe_mlir module (see smoke.test): x [?, 4] @ w [4, 2]
compiled from MLIR text and run."""

import os

import numpy as np

import moe_mlir

MODEL = """
func.func @matmul(%x: tensor<?x4xf32> {moe.name = "x"},
                  %w: tensor<4x2xf32> {moe.name = "w"})
    -> (tensor<?x2xf32> {moe.name = "y"}) {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x4xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty(%n) : tensor<?x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x2xf32>) -> tensor<?x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<?x4xf32>, tensor<4x2xf32>)
                     outs(%init : tensor<?x2xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
"""

print("module moe_mlir from", os.path.dirname(moe_mlir.__file__))
model = moe_mlir.parse(MODEL).compile()
print("inputs:", model.inputs)
print("outputs:", model.outputs)
x = np.arange(12, dtype=np.float32).reshape(3, 4)
w = np.ones((4, 2), np.float32)
y = model(x, w=w)["y"]
assert np.array_equal(y, x @ w)
print("y =", " ".join(f"{v:g}" for v in y.ravel()))
try:
    model(x, w.T)
except moe_mlir.InvalidArgumentError as e:
    print("InvalidArgumentError:", e)
try:
    moe_mlir.parse(MODEL).compile(target="cuda")
except moe_mlir.UnsupportedError as e:
    print("UnsupportedError:", e)
print("smoke: ok")
