//===- Passes.td - moe dialect passes ----------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEMaterializeRouterLogits : Pass<"moe-materialize-router-logits"> {
  let summary = "Compute router logits with linalg, leaving moe.route on logits";
  let description = [{
    Rewrites every `moe.route` that multiplies hidden states by its own router
    weight into an explicit `linalg.matmul` (reading W in its [E, H] layout,
    f32 result) and, with a bias, a `linalg.generic` adding it:

    ```
    logits[t, e] = Σ_h f32(x[t, h]) · f32(W[e, h])  (+ f32(b[e]))
    ```

    (a contraction over H accumulated in f32, as the op specifies), followed
    by a `moe.route` that takes those logits. With `round_logits` the logits
    are rounded to the hidden states' element type first, as the op
    specifies. A `moe.route` that already takes logits is left alone.

    This is the first step of lowering a router: the logits matmul becomes an
    ordinary linalg op that the CPU pipeline runs on its vector x · Wᵀ kernel
    (in parallel, like the model's other projections), and what remains of
    `moe.route` is pure per-token selection.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def MoEFuseGateUp : Pass<"moe-fuse-gate-up"> {
  let summary = "Compute each FFN's gate and up projections as one contraction with the activation in its epilogue";
  let description = [{
    Sets `fuse_gate_up` on every `moe.expert_ffn` and `moe.shared_expert`
    whose first projection the vector kernel handles: the intermediate width
    I is static and the hidden width H a static multiple of 16. The lowering
    then computes the gate and up products of a tile together (one pass over
    the activations for both weights, one parallel loop instead of two) and
    applies the biases, clamp and activation to the tile while it is in
    cache, so the [n, I] gate and up products are never materialized. An FFN
    without gating gets its activation fused the same way.

    Values do not change: each product keeps its summation order. Ops whose
    shapes the kernel does not handle, and ops that already carry the
    attribute, are left alone.
  }];
}

def MoEFuseSharedExpert : Pass<"moe-fuse-shared-expert"> {
  let summary = "Run each shared expert as always-selected slots of its layer's routed experts";
  let description = [{
    Rewrites a MoE layer whose output is `routed + shared`, where `routed`
    is `moe.combine` of `moe.expert_ffn` of `moe.dispatch` (all dropless) of
    a token-choice `moe.route`, and `shared` a `moe.shared_expert` of the
    same hidden states, into one routed layer: the shared FFN of width
    m · I (I the routed experts' width) becomes m experts E .. E+m-1 that
    every token selects, with weight `sigmoid(h · gateᵀ)` (Qwen's shared
    expert gate) or 1 (DeepSeek), appended after the router's k choices.
    The weights are stacked with `moe.stack_experts`, which the grouped
    FFN's lowering reads in place, so the routed and shared FFNs run as one
    grouped GEMM (one parallel loop per projection for the whole layer)
    instead of a separate dense FFN.

    Values: the shared output is added in f32 after the routed slots, in
    the combine's fixed order. For f32 models with m = 1 (DeepSeek-V3) this
    is bitwise the unfused result; with m > 1 (Qwen-MoE, DeepSeek-V2) the
    shared FFN's sum over its intermediate features is split into m partial
    sums (reassociation), and for bf16/f16 the routed and shared parts are
    added before, not after, rounding to the model type.

    Left alone (with a remark saying why): dense MLPs (a shared expert not
    added to a routed output), FFNs with biases, activations, gatings or
    clamps that differ, concatenated or interleaved gate/up weights, a
    shared width that is not a multiple of the routed one, capacity and
    expert-choice layers, a combine with a passthrough, and layers whose
    intermediate results have other uses (e.g. after moe-expert-parallel).
    Run moe-expert-parallel first, as moe-compile does: run after this
    pass, it would place the shared slots on one rank like routed experts.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def MoEFuseDispatchCombine : Pass<"moe-fuse-dispatch-combine"> {
  let summary = "Fuse each dropless dispatch -> expert_ffn -> combine chain into one moe.routed_ffn";
  let description = [{
    Rewrites `moe.combine(moe.expert_ffn(moe.dispatch(h, ids)), map, w)`,
    all three dropless, into `moe.routed_ffn h, ids, w` with the FFN's
    weights and attributes. Its lowering computes only the dispatch's
    bookkeeping (which rows each expert has), lets the first projection read
    the tokens' rows of `h` where they are instead of from a permuted
    [T·k, H] copy, and sums each tile of the down projection into the
    tokens' rows while it is in cache (the combine fused into the grouped
    GEMM's epilogue), so neither the copy of the hidden states nor the
    [T·k, H] expert output goes through memory. The result has exactly the
    bits of the unfused ops: every row is the same kernel's, and the
    combine's sum keeps its slot order.

    Fires only where that lowering applies: static weights with I and H
    multiples of 16. Left alone (with a remark saying why): capacity and
    expert-choice layouts, a combine with a passthrough, chains whose
    intermediate results have other uses (the dispatch's rows, counts or
    mapping, the FFN's output), FFNs on other rows, and expert-parallel
    layers (moe.ep_dispatch). Run it after moe-fuse-shared-expert and
    moe-fuse-gate-up, which rewrite the unfused chain, and after
    moe-expert-parallel, which refuses fused layers.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def MoEExpertParallel : Pass<"moe-expert-parallel", "::mlir::ModuleOp"> {
  let summary = "Shard the experts of every MoE layer over an expert-parallel group";
  let description = [{
    Rewrites the program into the program of one rank of an expert-parallel
    (EP) group of `ranks` ranks; every rank runs the same program. For each
    MoE layer (a `moe.combine` in `dropless` or `capacity` mode of the
    `moe.expert_ffn` of a `moe.dispatch` in the same mode), in program order:

    1. the experts are placed on the ranks (`placement`): `contiguous`
       (rank r holds a contiguous block; when E % N != 0 the first ranks
       hold one more), `round-robin` (expert e on rank e mod N) or
       `balanced` (DeepSeek's EPLB: `redundant` extra replicas of the most
       loaded experts, then a greedy packing of the E + R replicas onto N
       ranks of (E + R) / N slots; the per-expert load is the layer's
       `expert_counts` in the `routing-profile` JSON, else uniform). See
       moe-mlir/Runtime/Placement.h. Each rank has S local slots (the
       largest rank's; unused slots are -1).
    2. the layer becomes: routing (unchanged, replicated) ->
       `moe.ep_dispatch` (the ragged all-to-all of each home token's rows to
       the ranks of its experts' replicas) -> `moe.expert_ffn` on the local
       slots' weights -> `moe.ep_return` (the all-to-all back) ->
       `moe.combine` of the home tokens (`moe.ep_home` slices of the routing
       weights and of the passthrough) -> `moe.ep_all_gather` (every rank
       gets every token back). Capacity-mode layers keep their
       `moe.dispatch` for its admission decisions and exchange the
       admitted assignments only.
    3. a weight of the layer's `moe.expert_ffn` that is an argument of the
       function used by that op alone becomes [S, ...], and its
       `moe.expert_slots` argument attribute lists the expert of every
       global slot (`ranks` x S ids, rank-major, -1 unused), which the
       runtime uses to bind each rank's experts only. Any other weight
       (dequantized or transposed in the function, or shared) is computed
       for all E experts on every rank and `moe.ep_slots` keeps the rank's.

    Calls of functions that hold MoE layers (an importer's per-layer
    function) are inlined first, so that every layer is placed on its own.
    The function gets `moe.expert_parallel = ranks`. Attention, dense and
    shared-expert layers stay replicated (moe-fuse-shared-expert, which
    moe-compile runs after sharding, leaves sharded layers alone). Each assignment is computed by
    exactly the kernel, and combined in exactly the order, of the unsharded
    layer, so every rank's results are bitwise those of the unsharded
    program. Expert-choice layers and placements that cannot hold the
    experts (e.g. E < ranks, or E + R not a multiple of ranks for
    `balanced`) are errors.
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", /*default=*/"1",
           "The expert-parallel degree N (1: leave the module unchanged)">,
    Option<"placement", "placement", "std::string", /*default=*/"\"contiguous\"",
           "contiguous, round-robin or balanced">,
    Option<"redundant", "redundant", "int64_t", /*default=*/"0",
           "Redundant expert replicas per layer (balanced only)">,
    Option<"routingProfile", "routing-profile", "std::string",
           /*default=*/"\"\"",
           "A routing profile (JSON) whose per-layer expert counts balance "
           "the placement">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def MoEExposeRouting : Pass<"moe-expose-routing", "::mlir::ModuleOp"> {
  let summary = "Return every router's expert choices as extra results";
  let description = [{
    Appends the `indices` ([T, k] expert ids, -1 for a dropped assignment)
    of every token-choice `moe.route` of each public function to its
    results, named `routing.<layer>.e<E>` (`moe.name`; E the number of
    experts), layers numbered from 0 in program order. Runners use them to record a routing profile of real
    inputs (`moe-run --record-routing`), the input of the balanced expert
    placement and of `moe-plan`. Expert-choice routers (whose indices are
    token ids, not expert ids) are not exposed. Calls of functions that
    hold routers (an importer's per-layer function) are inlined first;
    nothing else changes.
  }];
}

#endif // MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_TD
