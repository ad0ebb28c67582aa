"""The NumPy reference of moe_models.py against ONNX Runtime 1.30's CPU
kernels for com.microsoft.MoE and com.microsoft.QMoE, and the record of what
that provider accepts and rejects.

Every combination in moe_models.all_specs() is built and run in ORT (all in
one node process). For each one:
  * ORT's outcome (runs / rejected at session creation / rejected at run
    time, with the message) must be the one ort_cpu_rejection() records;
  * where ORT runs it, the reference must agree within moe_models.tolerance():
    1e-5 of max|ORT output| for f32, 2e-3 for f16.
Plus the facts the reference relies on: the tie rule, the legacy-layout
trap, QMoE's routing, the dequantization layout, and ort_runner itself.

These tests need ONNX Runtime (skipped, with the reason, without it) but not
moe-mlir."""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the python onnx package builds the test models")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import moe_models as M  # noqa: E402
import ort_runner  # noqa: E402

ort_runner.require_ort(allow_module_level=True)

SPECS = M.all_specs()
IDS = [s.name() for s in SPECS]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{spec name: (Case, ORT result or OrtError)} for every spec."""
    root = tmp_path_factory.mktemp("ref_vs_ort")
    cases = [M.build_case(s, str(root / f"case{i}")) for i, s in enumerate(SPECS)]
    results = ort_runner.run_many([(c.path, c.feeds) for c in cases])
    return {c.spec.name(): (c, r) for c, r in zip(cases, results)}


def rel_err(actual, expected):
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    return np.abs(a - e).max() / max(np.abs(e).max(), 1e-30)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_ort_cpu_outcome_is_as_recorded(spec, outcomes):
    case, res = outcomes[spec.name()]
    expected = M.ort_cpu_rejection(spec)
    if expected is None:
        assert not isinstance(res, ort_runner.OrtError), (
            f"ORT was expected to run {spec.name()} but said: {res}")
    else:
        stage, fragment = expected
        assert isinstance(res, ort_runner.OrtError), (
            f"ORT was expected to reject {spec.name()} ({fragment}) but ran it")
        assert res.stage == stage and fragment in res.message, (
            f"expected a {stage} error containing {fragment!r}, got {res}")


@pytest.mark.parametrize("spec", [s for s in SPECS if M.ort_cpu_rejection(s) is None],
                         ids=[s.name() for s in SPECS if M.ort_cpu_rejection(s) is None])
def test_reference_matches_ort(spec, outcomes):
    case, res = outcomes[spec.name()]
    assert not isinstance(res, ort_runner.OrtError), str(res)
    outs, _ = res
    assert list(outs) == [spec.output_name]
    got = outs[spec.output_name]
    ref = M.reference(spec, case.x, case.weights)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    err = rel_err(got, ref)
    assert err <= M.tolerance(spec), f"{spec.name()}: reference vs ORT {err:.3e}"


def test_matrix_covers_the_attribute_space():
    """The matrix has what the tests promise (a guard against edits)."""
    moe = [s for s in M.moe_matrix()
           if M.invalid_reason(s) is None and M.optional_reason(s) is None]
    assert {s.k for s in moe} >= {1, 2, 4}
    assert {s.activation for s in moe} == set(M.ACTIVATIONS)
    assert {s.swiglu_fusion for s in moe if s.activation == "swiglu"} >= {None, 0, 1, 2}
    assert any(s.limit is not None for s in moe)
    assert any(s.alpha is not None and s.beta is not None for s in moe)
    assert {s.normalize for s in moe} >= {0, 1, None}
    assert {s.sparse_mixer for s in M.moe_matrix() if M.invalid_reason(s) is None} >= {0, 1}
    assert any(s.fc1_bias and s.fc2_bias for s in moe) and any(s.fc3_bias for s in moe)
    assert {s.weights for s in moe} == {"initializer", "external", "input"}
    assert {s.router for s in moe} == {"matmul", "genai", "input"}
    assert {len(s.shape) for s in moe} == {1, 2}
    assert {s.T for s in moe} >= {1, 5, 33}
    q = [s for s in M.qmoe_matrix() if M.invalid_reason(s) is None]
    assert {(s.bits, s.block_size > 0, s.zero_points) for s in q} >= {
        (b, blk, zp) for b in (4, 8) for blk in (False, True) for zp in (False, True)}


# ---------------------------------------------------------------------------
# Facts behind the reference
# ---------------------------------------------------------------------------


def _run_one(tmp_path, spec, x, w, name="m"):
    path = str(tmp_path / f"{name}.onnx")
    extra = M.build_model(spec, w, path)
    return ort_runner.run(path, M.feeds_for(spec, x, extra))[spec.output_name]


@pytest.mark.parametrize("spec", [
    M.MoESpec(router="input", k=1, normalize=0, shape=(4,)),
    M.MoESpec(router="input", k=2, normalize=1, shape=(4,)),
    M.MoESpec(H=64, I=32, E=4, router="input", k=1, shape=(4,), activation="swiglu",
              swiglu_fusion=1, bits=8),
], ids=lambda s: s.name())
def test_exact_ties_go_to_the_higher_expert_index(spec, tmp_path):
    """ORT's std::partial_sort with std::greater on (score, index) prefers the
    higher index on an exact tie; the moe dialect's rule is the lower one."""
    x, w = M.make_any_case(spec, 1)
    L = np.full((4, spec.E), -1.0, np.float32)
    L[0, [1, 3]] = 2.0                   # top-1 tie between experts 1 and 3
    L[1, [0, spec.E - 1]] = 2.0          # between the first and the last
    L[2, 2] = 3.0
    L[2, [0, 1]] = 2.0                   # tie for the second slot
    L[3, :] = 0.5                        # everything tied
    w["router_logits"] = L
    got = _run_one(tmp_path, spec, x, w)
    assert rel_err(got, M.reference(spec, x, w, ties="ort")) < 1e-5
    assert rel_err(got, M.reference(spec, x, w, ties="low")) > 1e-2


def test_moe_swiglu_defaults_are_plain_swiglu(tmp_path):
    """Without activation_alpha/beta/swiglu_limit the CPU swiglu is
    g * sigmoid(g) * l (alpha 1, beta 0, no clamp), not GPT-OSS's
    (1.702, 1, 7)."""
    spec = M.MoESpec(activation="swiglu", swiglu_fusion=1, shape=(33,))
    x, w = M.make_any_case(spec)
    w["fc1"] = w["fc1"] * 4.0            # large gate values: any clamp would show
    got = _run_one(tmp_path, spec, x, w)
    assert rel_err(got, M.reference(spec, x, w)) < 1e-5
    gpt_oss = spec.replace(alpha=1.702, beta=1.0, limit=7.0)
    assert rel_err(got, M.reference(gpt_oss, x, w)) > 1e-2


def test_alpha_beta_are_ignored_by_other_activations(tmp_path):
    spec = M.MoESpec(activation="silu")
    x, w = M.make_any_case(spec)
    plain = _run_one(tmp_path, spec, x, w, "plain")
    scaled = _run_one(tmp_path, spec.replace(alpha=2.0, beta=1.0), x, w, "scaled")
    np.testing.assert_array_equal(plain, scaled)


def test_sparse_mixer_is_ignored(tmp_path):
    spec = M.MoESpec(activation="silu", k=2)
    x, w = M.make_any_case(spec)
    np.testing.assert_array_equal(_run_one(tmp_path, spec, x, w, "a"),
                                  _run_one(tmp_path, spec.replace(sparse_mixer=1), x, w, "b"))


@pytest.mark.parametrize("spec", [
    M.MoESpec(H=32, I=48, layout="legacy"),
    M.MoESpec(H=32, I=48, layout="legacy", activation="swiglu", swiglu_fusion=1),
    M.MoESpec(H=32, I=32, layout="legacy"),
], ids=lambda s: s.name())
def test_legacy_layout_runs_with_wrong_numbers(spec, tmp_path):
    """The trap: fc1 [E, H, I] / fc2 [E, I, H] passes ORT 1.30's checks (its
    shape helper even recognizes the 'legacy' layout, for H != I too) but the
    CPU kernel reads the memory as [E, I, H] / [E, H, I]."""
    x, w = M.make_any_case(spec)
    got = _run_one(tmp_path, spec, x, w)
    # reference() of a legacy spec is what ORT computes: the misreading.
    assert rel_err(got, M.reference(spec, x, w)) < 1e-5
    meant = M.reference(spec.replace(layout="new"), x, w)
    assert rel_err(got, meant) > 0.1


def test_qmoe_routing_ignores_normalize_routing_weights(tmp_path):
    """QMoE: softmax over the k chosen logits whatever the flag; MoE honours
    it."""
    q = M.MoESpec(H=64, I=32, E=4, k=2, activation="swiglu", swiglu_fusion=1, bits=4,
                  block_size=16, normalize=1)
    x, w = M.make_any_case(q)
    a = _run_one(tmp_path, q, x, w, "q1")
    b = _run_one(tmp_path, q.replace(normalize=0), x, w, "q0")
    c = _run_one(tmp_path, q.replace(normalize=None), x, w, "qn")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    m = M.MoESpec(H=64, I=32, E=4, k=2, activation="silu")
    x, w = M.make_any_case(m)
    assert rel_err(_run_one(tmp_path, m.replace(normalize=0), x, w, "m0"),
                   _run_one(tmp_path, m, x, w, "m1")) > 1e-2


def test_qmoe_default_zero_point_and_nibble_order(tmp_path):
    """One expert, one token, identity activation, k=1: the output is W x
    for the dequantized W, so single codes can be probed. Code byte 0x2F in
    column pair (0, 1) means column 0 = 0xF, column 1 = 0x2; without zero
    points the zero is 8."""
    H, I, E = 32, 16, 2
    spec = M.MoESpec(H=H, I=I, E=E, k=1, shape=(1,), activation="identity",
                     router="input", bits=4, block_size=0, normalize=0)
    x, w = M.make_any_case(spec)
    codes1 = np.full((E, I, H), 8, np.uint8)            # fc1 = 0 except ...
    codes1[:, 0, 0], codes1[:, 0, 1] = 0xF, 0x2          # row 0: 7*s, -6*s
    codes2 = np.full((E, H, I), 8, np.uint8)
    codes2[:, :, 0] = 9                                  # fc2[:, :, 0] = 1*s2
    w["fc1_q"], w["fc2_q"] = M.pack_codes(codes1, 4), M.pack_codes(codes2, 4)
    assert w["fc1_q"][0, 0, 0] == 0x2F
    w["fc1_scales"] = np.full((E, I), 0.5, np.float32)
    w["fc2_scales"] = np.full((E, H), 0.25, np.float32)
    w["router_logits"] = np.array([[1.0, 0.0]], np.float32)
    x = np.zeros((1, H), np.float32)
    x[0, 0], x[0, 1] = 1.0, 2.0
    got = _run_one(tmp_path, spec, x, w)
    # h0 = 0.5 * (7 * 1 + (-6) * 2) = -2.5; y = 0.25 * h0 for every output.
    np.testing.assert_allclose(got, np.full((1, H), 0.25 * -2.5, np.float32), rtol=1e-6)
    for fc, K in (("fc1", H), ("fc2", I)):
        w[fc] = M.dequantize(w[f"{fc}_q"], w[f"{fc}_scales"], None, 4, 0, K)
    np.testing.assert_allclose(got, M.reference(spec, x, w), rtol=1e-6)


def test_qmoe_single_block_zero_point_quirk(tmp_path):
    """4-bit zero points with one block per row (K == block_size) are read in
    the row-wise layout: the NumPy dequantization reproduces that, and it is
    not what a block-wise reading means (so such models are invalid)."""
    spec = M.MoESpec(H=64, I=32, E=4, k=2, activation="swiglu", swiglu_fusion=1, bits=4,
                     block_size=32, zero_points=True)
    assert "fc2_zero_points" in M.invalid_reason(spec)[1]
    x, w = M.make_any_case(spec)
    got = _run_one(tmp_path, spec, x, w)
    assert rel_err(got, M.reference(spec, x, w)) < 1e-5
    intended = dict(w)
    zp = M.unpack_codes(w["fc2_zp"], 4, 2)[:, :, :1].astype(np.float64)
    codes = M.unpack_codes(w["fc2_q"], 4, 32).astype(np.float64)
    intended["fc2"] = (w["fc2_scales"].astype(np.float64) * (codes - zp)).astype(np.float32)
    assert rel_err(got, M.reference(spec, x, intended)) > 1e-3


def test_qmoe_f16_scales_in_a_float_model(tmp_path):
    """T2 float16 with T float is accepted (ORT inserts a Cast; exact)."""
    spec = M.MoESpec(H=64, I=32, E=4, activation="swiglu", swiglu_fusion=1, bits=4,
                     block_size=16)
    x, w = M.make_any_case(spec)
    for fc, K in (("fc1", 64), ("fc2", 32)):
        w[f"{fc}_scales"] = M.round_to_dtype(w[f"{fc}_scales"], "f16")
        w[fc] = M.dequantize(w[f"{fc}_q"], w[f"{fc}_scales"], None, 4, 16, K)
    path = str(tmp_path / "m.onnx")
    extra = M.build_model(spec, w, path, overrides={
        "fc1_scales": w["fc1_scales"].astype(np.float16),
        "fc2_scales": w["fc2_scales"].astype(np.float16)})
    got = ort_runner.run(path, M.feeds_for(spec, x, extra))[spec.output_name]
    assert got.dtype == np.float32
    assert rel_err(got, M.reference(spec, x, w)) < 1e-5


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("block_size", [0, 16, 32])
@pytest.mark.parametrize("zero_points", [False, True])
def test_quantize_dequantize_roundtrip(bits, block_size, zero_points):
    """quantize_weights / pack / dequantize agree with each other (no ORT)."""
    rng = np.random.default_rng(bits * 100 + block_size + zero_points)
    w = rng.standard_normal((3, 10, 64)).astype(np.float32)
    qd = M.quantize_weights(w, bits, block_size, zero_points)
    np.testing.assert_array_equal(M.unpack_codes(qd["q"], bits, 64), qd["codes"])
    assert qd["q"].shape == (3, 10, 64 * bits // 8)
    deq = M.dequantize(qd["q"], qd["scales"], qd["zp"], bits, block_size, 64)
    step = np.abs(w).max() / ((1 << (bits - 1)) - 1)
    assert np.abs(deq - w).max() <= step * (1.0 if zero_points else 0.5) + 1e-6
    if zero_points and block_size == 0:
        assert qd["zp"].shape == (3, -(-10 // (8 // bits)))
    elif zero_points:
        assert qd["zp"].shape == (3, 10, -(-(64 // block_size) // (8 // bits)))


def test_ort_reports_wrong_shapes_by_input_name(tmp_path):
    """For the record: ORT's own shape errors name the input and the shape it
    expected (the tool is asked for the same)."""
    spec = M.MoESpec()
    x, w = M.make_any_case(spec)
    path = str(tmp_path / "m.onnx")
    extra = M.build_model(spec, w, path, overrides={
        "fc1_experts_weights": np.zeros((8, 48, 31), np.float32)})
    with pytest.raises(ort_runner.OrtError) as e:
        ort_runner.run(path, M.feeds_for(spec, x, extra))
    assert e.value.stage == "run"
    assert "Input 'fc1_experts_weights' is expected to have shape {8,48,32}, got {8,48,31}" \
        in e.value.message


# ---------------------------------------------------------------------------
# ort_runner itself
# ---------------------------------------------------------------------------


def test_ort_runner_dtypes_and_all_outputs(tmp_path):
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper
    nodes = [
        helper.make_node("Cast", ["f"], ["f_as_f16"], to=TP.FLOAT16),
        helper.make_node("Add", ["h", "h"], ["h2"]),
        helper.make_node("Add", ["i64", "i64"], ["i64x2"]),
        helper.make_node("Add", ["i32", "i32"], ["i32x2"]),
        helper.make_node("Not", ["b"], ["not_b"]),
        helper.make_node("Cast", ["u8"], ["u8_as_i32"], to=TP.INT32),
        helper.make_node("Identity", ["u8"], ["u8_copy"]),
    ]
    ins = [("f", TP.FLOAT, [2, 3]), ("h", TP.FLOAT16, [4]), ("i64", TP.INT64, [3]),
           ("i32", TP.INT32, [2]), ("b", TP.BOOL, [3]), ("u8", TP.UINT8, [4])]
    outs = [("f_as_f16", TP.FLOAT16), ("h2", TP.FLOAT16), ("i64x2", TP.INT64),
            ("i32x2", TP.INT32), ("not_b", TP.BOOL), ("u8_as_i32", TP.INT32),
            ("u8_copy", TP.UINT8)]
    graph = helper.make_graph(nodes, "dtypes",
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in ins],
                              [helper.make_tensor_value_info(n, t, None) for n, t in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = str(tmp_path / "dtypes.onnx")
    onnx.save(model, path)
    feeds = {"f": np.array([[0.1, -2.5, 3.0], [1e-3, 65504.0, -0.0]], np.float32),
             "h": np.array([1.5, -2.0, 0.25, 100.0], np.float16),
             "i64": np.array([1, 2 ** 40, -3], np.int64),
             "i32": np.array([7, -8], np.int32),
             "b": np.array([True, False, True]),
             "u8": np.array([0, 1, 128, 255], np.uint8)}
    got, ms = ort_runner.run(path, feeds, repeat=3, timed=True, threads=2)
    assert list(got) == [n for n, _ in outs]
    np.testing.assert_array_equal(got["f_as_f16"], feeds["f"].astype(np.float16))
    np.testing.assert_array_equal(got["h2"], feeds["h"] * 2)
    np.testing.assert_array_equal(got["i64x2"], feeds["i64"] * 2)
    np.testing.assert_array_equal(got["i32x2"], feeds["i32"] * 2)
    np.testing.assert_array_equal(got["not_b"], ~feeds["b"])
    np.testing.assert_array_equal(got["u8_as_i32"], feeds["u8"].astype(np.int32))
    np.testing.assert_array_equal(got["u8_copy"], feeds["u8"])
    for name, dt in (("f_as_f16", np.float16), ("i64x2", np.int64), ("not_b", np.bool_),
                     ("u8_copy", np.uint8)):
        assert got[name].dtype == dt
    assert isinstance(ms, float) and ms >= 0.0
    with pytest.raises(ort_runner.OrtError) as e:
        ort_runner.run(path, {"f": feeds["f"]})
    assert e.value.stage == "run"
