"""The Mixtral-style layer compiled by moe-mlir against ONNX Runtime's own
com.microsoft.MoE CPU kernel (a second, independent oracle next to the
PyTorch reference). f32 within 1e-5 of max|ORT output|."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "ort"))
sys.path.insert(0, os.path.join(HERE, "reference"))
import ort_moe  # noqa: E402
import moe_reference as R  # noqa: E402
from moe_harness import assert_close, run  # noqa: E402
from test_moe_ops import mixtral_inputs, mixtral_layer  # noqa: E402

if not ort_moe.available():
    pytest.skip("onnxruntime-node is not installed (scripts/setup.sh --with-onnxruntime)",
                allow_module_level=True)


@pytest.mark.parametrize("T", [1, 5, 32])
@pytest.mark.parametrize("k", [1, 2])
def test_mixtral_layer_matches_onnxruntime(T, k):
    g = np.random.default_rng(100 * T + k)
    H, E, I = 32, 8, 48
    inputs = mixtral_inputs(g, T, H, E, I)
    ours = run(mixtral_layer(T, H, E, I, k, dynamic=True), inputs, aot=True)["out"]
    theirs, _ = ort_moe.run(inputs["x"], inputs["gate"], inputs["w1"],
                            inputs["w2"], inputs["w3"], k)
    assert_close(ours, theirs, 1e-5, "moe-mlir vs ONNX Runtime")
    # Both agree with the HF-style reference too.
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k)
    assert_close(theirs, ref, 1e-5, "ONNX Runtime vs reference")
