//===- MoEOps.td - moe dialect operations ------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_MLIR_DIALECT_MOE_IR_MOEOPS_TD

include "moe-mlir/Dialect/MoE/IR/MoEAttrs.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic,
         !listconcat(traits, [Pure, InferTypeOpAdaptorWithIsCompatible])> {
  let hasVerifier = 1;
}

// Activations, weights and expert outputs: f32, f16 or bf16 tensors.
def MoE_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def MoE_F32Tensor : RankedTensorOf<[F32]>;
def MoE_I32Tensor : RankedTensorOf<[I32]>;

def MoE_PositiveI64 : ConfinedAttr<I64Attr, [IntPositive]>;
def MoE_NonNegativeI64 : ConfinedAttr<I64Attr, [IntNonNegative]>;

// Attributes shared by every FFN-shaped op (routed and shared experts).
defvar MoE_FfnAttrs = (ins
  MoE_ActivationAttr:$activation,
  DefaultValuedAttr<MoE_GatingAttr, "::moe_mlir::moe::Gating::None">:$gating,
  DefaultValuedAttr<F32Attr, "1.0f">:$activation_alpha,
  DefaultValuedAttr<F32Attr, "0.0f">:$activation_beta,
  OptionalAttr<F32Attr>:$clamp_limit,
  UnitAttr:$fuse_gate_up
);

defvar MoE_FfnDescription = [{
    **The FFN.** With `gating = none` (two matrices):
    `y = fc2 · act(fc1 · x + fc1_bias) + fc2_bias`.
    With a gated linear unit (`separate`, `concatenated`, `interleaved`):
    `g = fc1_gate · x + fc1_bias_gate`, `u = fc1_up · x + fc1_bias_up`
    (`fc3` / `fc3_bias` hold the up projection when `separate`), then
    `y = fc2 · (act(g) * (u + activation_beta)) + fc2_bias`. SwiGLU, the FFN
    of Mixtral, Qwen and DeepSeek, is `activation = silu` with gating; the
    HF names map as Mixtral `w1/w3/w2` = `fc1/fc3/fc2`, Qwen/DeepSeek
    `gate_proj/up_proj/down_proj` = `fc1/fc3/fc2`.

    `activation_alpha` scales the sigmoid argument of `silu`
    (`x * sigmoid(alpha * x)`); `clamp_limit` L, when present, clamps
    before the activation: `g = min(g, L)` and `u = clamp(u, -L, L)` for gated
    FFNs (exactly ONNX Runtime's swiglu with activation_alpha/beta and
    swiglu_limit), `h = clamp(h, -L, L)` otherwise (our extension; ONNX
    Runtime has no clamp there). Defaults give the plain activation.

    Weights use the `nn.Linear` layout `[out, in]`. Matrix products
    accumulate in f32; the activation is applied in f32; the result is
    rounded once to the element type of the activations. This is a
    deliberate choice: frameworks round intermediate results to the model
    dtype (HF applies each nn.Linear in bf16, ONNX Runtime stores the fc1,
    activation and fc2 outputs in T), so results are close to theirs, not
    bit-identical. Weights may have a different element type from the
    activations (e.g. bf16 weights with f32 activations); all weights and
    biases of one op share one element type.

    `fuse_gate_up` (set by `moe-fuse-gate-up`) asks the lowering to compute
    the first projection as one contraction over the gate and up weights
    together (fc1 alone without gating), with the biases, clamp and
    activation applied in its epilogue while each tile is in cache, instead
    of materializing `g` and `u`. It changes no value: every product is
    summed in the same order. The lowering ignores it where its vector
    kernel does not apply (a dynamic I, or H not a multiple of 16).
}];

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

def MoE_RouteOp : MoE_Op<"route", [AttrSizedOperandSegments]> {
  let summary = "router: per-token top-k experts and their weights";
  let description = [{
    Scores every (token, expert) pair and chooses which experts process which
    tokens. All router math is carried out in f32, whatever the element type
    of the operands.

    **Logits.** If `router_weight` ([E, H]) is given, `input` is the hidden
    states [T, H] and `logits = input · router_weightᵀ (+ router_bias [E])`,
    accumulated in f32. Otherwise `input` is the logits [T, E] themselves.
    With `round_logits` the logits are rounded to `input`'s element type
    before scoring (HF Mixtral and Qwen apply the gate `nn.Linear` in the
    model dtype and only then cast to f32).

    **Scores.** `scoring`:
    - `softmax`: `s = softmax(logits)` over all E experts (Mixtral, Qwen,
      DeepSeek-V2, Switch);
    - `sigmoid`: `s = sigmoid(logits)` per expert (DeepSeek-V3);
    - `topk_softmax`: `s = logits`; the weights are the softmax over the k
      chosen logits (Mistral's reference code, the decomposed ONNX form).

    **Selection** (`mode = token_choice`, the default). The selection score
    is `c = s + selection_bias` (DeepSeek-V3's `e_score_correction_bias`,
    [E] f32; it is used only to choose, never in the weights).
    With `n_group > 1` the E experts form `n_group` contiguous groups of
    E / n_group; a group scores the `max` of its `c` (DeepSeek-V2) or the sum
    of its two largest `c` (`top2_sum`, DeepSeek-V3) as `group_score` says;
    the `topk_group` best groups are kept and the `c` of every expert in the
    other groups is replaced by `-inf` or `0.0` (`group_mask_fill`).
    Then the k experts with the largest `c` are chosen, in decreasing order
    of `c`; ties go to the lower expert index (lower group index for groups).
    This tie rule is ours, chosen to be deterministic: `torch.topk` does not
    specify one and ONNX Runtime's CPU kernel prefers the higher index, so
    exact ties may choose differently from them.

    **Weights.** `w_j = s[e_j]` for the chosen experts (`topk_softmax`: the
    softmax of the k chosen logits). With `renormalize`,
    `w_j /= (Σ_j w_j + renormalize_epsilon)` (HF `norm_topk_prob`; HF
    DeepSeek-V3 and the DeepSeek-V2 hub code add 1e-20, Mixtral and Qwen
    nothing). Finally `w_j *= routed_scaling_factor`. (The DeepSeek-V2 hub
    code scales only when it does not renormalize: an importer expresses that
    with `routed_scaling_factor = 1` when renormalizing.)

    **Capacity** (token choice with `expert_capacity` or `capacity_factor`;
    Switch, GShard, NLLB-MoE). Each expert admits at most
    `C = expert_capacity`, or `C = ceil(((f · T) · k) / E)` evaluated in f64
    in that order, f the f32 value of `capacity_factor` (our formula; models
    that define C otherwise, e.g. mesh-tensorflow's floor, give
    `expert_capacity`). Capacity is counted over the T tokens of this
    op: to count per sequence or per group, as HF Switch does, route each
    sequence separately. Assignments are admitted slot-major: every token's
    slot 0 in token order, then every token's slot 1, and so on (GShard,
    NLLB-MoE). An assignment past its expert's capacity is *dropped*: its
    index becomes -1. Its weight keeps the value computed above, unless
    `renormalize_after_drop` is set: then each token's weights before the
    scaling, `u`, are renormalized over its admitted assignments only,
    `w_j = routed_scaling_factor · u_j / max(Σ_admitted u, 1.1920929e-07)`
    (NLLB-MoE's default), and a dropped assignment's weight is 0. A dropped token's MoE output is 0
    (current HF Switch), or `weight · hidden` with `moe.combine`'s
    passthrough (HF Switch before its 2025 fix).

    Results: `indices` [T, k] i32 expert ids and `weights` [T, k] f32.

    **Expert choice** (`mode = expert_choice`). Scores as above (`softmax`
    or `sigmoid`, no groups, no selection bias, no renormalization); every
    expert e chooses the `C` tokens with the largest `s[:, e]`, in decreasing
    order of score, ties to the lower token index, where
    `C = expert_capacity`, or `C = ceil(capacity_factor · T · k / E)` with
    `capacity_factor` 1 by default (k is the average number of experts per
    token). When C > T the last C - T entries are -1 with weight 0.
    Results: `indices` [E, C] i32 token ids and `weights` [E, C] f32
    (`weights * routed_scaling_factor`).

    Example (DeepSeek-V3):
    ```mlir
    %ids, %w = moe.route %x weight(%gate_w) selection_bias(%bias)
        k = 8 scoring = sigmoid
        {n_group = 8, topk_group = 4, group_score = #moe.group_score<top2_sum>,
         renormalize, renormalize_epsilon = 1.0e-20 : f32,
         routed_scaling_factor = 2.5 : f32}
        : (tensor<?x7168xbf16>, tensor<256x7168xbf16>, tensor<256xf32>)
        -> (tensor<?x8xi32>, tensor<?x8xf32>)
    ```
  }];

  let arguments = (ins
    MoE_FloatTensor:$input,
    Optional<MoE_FloatTensor>:$router_weight,
    Optional<MoE_FloatTensor>:$router_bias,
    Optional<MoE_F32Tensor>:$selection_bias,
    MoE_PositiveI64:$k,
    MoE_ScoringAttr:$scoring,
    DefaultValuedAttr<MoE_RoutingModeAttr,
                      "::moe_mlir::moe::RoutingMode::TokenChoice">:$mode,
    UnitAttr:$round_logits,
    UnitAttr:$renormalize,
    DefaultValuedAttr<F32Attr, "0.0f">:$renormalize_epsilon,
    UnitAttr:$renormalize_after_drop,
    DefaultValuedAttr<F32Attr, "1.0f">:$routed_scaling_factor,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$n_group,
    OptionalAttr<MoE_PositiveI64>:$topk_group,
    OptionalAttr<MoE_GroupScoreAttr>:$group_score,
    DefaultValuedAttr<MoE_MaskFillAttr,
                      "::moe_mlir::moe::MaskFill::NegInf">:$group_mask_fill,
    OptionalAttr<MoE_NonNegativeI64>:$expert_capacity,
    OptionalAttr<F32Attr>:$capacity_factor
  );
  let results = (outs MoE_I32Tensor:$indices, MoE_F32Tensor:$weights);

  let assemblyFormat = [{
    $input (`weight` `(` $router_weight^ `)`)?
    (`router_bias` `(` $router_bias^ `)`)?
    (`selection_bias` `(` $selection_bias^ `)`)?
    `k` `=` $k `scoring` `=` `` $scoring
    attr-dict `:` functional-type(operands, results)
  }];

  let extraClassDeclaration = [{
    /// Number of routed experts E.
    int64_t getNumExperts();
    /// True when the router multiplies hidden states by its own weight.
    bool hasRouterWeight() { return static_cast<bool>(getRouterWeight()); }
    /// True when token-choice routing drops assignments past a capacity.
    bool hasCapacity() {
      return getExpertCapacity().has_value() || getCapacityFactor().has_value();
    }
  }];
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

def MoE_DispatchOp : MoE_Op<"dispatch"> {
  let summary = "gather token rows into per-expert groups";
  let description = [{
    Copies each token's hidden row once per assignment into a layout where the
    rows of one expert are contiguous, and returns the mapping `moe.combine`
    needs to bring the expert outputs back. In the token-choice modes,
    assignments with index -1 (or outside [0, E)) are dropped: they occupy
    no row.

    - `dropless` (`indices` [T, k] expert ids): `rows` [T·k, H] holds the
      rows grouped by expert in increasing expert order; within an expert in
      increasing (token, slot) order. Rows past the last assignment (when
      some are dropped) are zero. `counts[e]` is the number of rows of
      expert e, so its rows start at `Σ_{e' < e} counts[e']` (the per-expert
      offsets). `mapping` [T, k] is the row of each assignment, -1 if dropped.
    - `capacity` (`indices` [T, k]): `rows` [E, C, H], with
      `C = expert_capacity` or `ceil(capacity_factor · T · k / E)`.
      Assignments are admitted slot-major (all slot 0 in token order, then
      slot 1, ...) into the next free slot of their expert; an assignment
      that finds its expert full is dropped. `counts[e]` (≤ C) slots of
      expert e are used, the rest are zero. `mapping` [T, k] is the flat slot
      `e · C + c` of each assignment, -1 if dropped (what was dropped).
    - `expert_choice` (`indices` [E, C] token ids from an expert-choice
      `moe.route`): `rows[e, c] = input[indices[e, c]]`, zero where the token
      id is outside [0, T) (-1 pads the end of a row when C > T); `counts[e]`
      is the number of valid token ids of expert e;
      `mapping` [T, E] is `e · C + c` if expert e chose token t at position c,
      else -1.

    `num_experts` is E. Rows have `input`'s element type; no arithmetic is
    done, so the op is exact for every element type.

    Example:
    ```mlir
    %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 8
        : (tensor<?x4096xbf16>, tensor<?x2xi32>)
        -> (tensor<?x4096xbf16>, tensor<8xi32>, tensor<?x2xi32>)
    ```
  }];

  let arguments = (ins
    MoE_FloatTensor:$input,
    MoE_I32Tensor:$indices,
    MoE_DispatchModeAttr:$mode,
    MoE_PositiveI64:$num_experts,
    OptionalAttr<MoE_NonNegativeI64>:$expert_capacity,
    OptionalAttr<F32Attr>:$capacity_factor
  );
  let results = (outs MoE_FloatTensor:$rows, MoE_I32Tensor:$counts,
                      MoE_I32Tensor:$mapping);

  let assemblyFormat = [{
    `` $mode $input `,` $indices `experts` `=` $num_experts
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

def MoE_ExpertFfnOp : MoE_Op<"expert_ffn", [AttrSizedOperandSegments]> {
  let summary = "grouped expert FFN over dispatched rows";
  let description = [{
    Applies expert e's FFN to the rows that `moe.dispatch` grouped for expert
    e, with the weights of all E experts stacked along a leading dimension.

    `rows` is either [N, H] (dropless: the first `counts[0]` rows belong to
    expert 0, the next `counts[1]` to expert 1, ...; rows past `Σ counts` give
    zero) or [E, C, H] (capacity and expert-choice layouts: `rows[e, c]` for
    `c < counts[e]` belong to expert e, the rest give zero). The result has
    the shape and element type of `rows`.

    Weights: `fc1` [E, I, H] (or [E, 2I, H] with `concatenated` or
    `interleaved` gating), `fc3` [E, I, H] (only with `separate` gating),
    `fc2` [E, H, I]; biases `fc1_bias` [E, I or 2I], `fc3_bias` [E, I],
    `fc2_bias` [E, H].
  }] # MoE_FfnDescription # [{

    Example (Mixtral experts):
    ```mlir
    %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2)
        act = silu gating = separate
        : (tensor<?x4096xbf16>, tensor<8xi32>, tensor<8x14336x4096xbf16>,
           tensor<8x4096x14336xbf16>, tensor<8x14336x4096xbf16>)
        -> tensor<?x4096xbf16>
    ```
  }];

  let arguments = !con((ins
    MoE_FloatTensor:$rows,
    MoE_I32Tensor:$counts,
    MoE_FloatTensor:$fc1,
    MoE_FloatTensor:$fc2,
    Optional<MoE_FloatTensor>:$fc3,
    Optional<MoE_FloatTensor>:$fc1_bias,
    Optional<MoE_FloatTensor>:$fc2_bias,
    Optional<MoE_FloatTensor>:$fc3_bias), MoE_FfnAttrs);
  let results = (outs MoE_FloatTensor:$result);

  let assemblyFormat = [{
    $rows `,` $counts
    `fc1` `(` $fc1 `)` (`fc3` `(` $fc3^ `)`)? `fc2` `(` $fc2 `)`
    (`fc1_bias` `(` $fc1_bias^ `)`)? (`fc3_bias` `(` $fc3_bias^ `)`)?
    (`fc2_bias` `(` $fc2_bias^ `)`)?
    `act` `=` `` $activation (`gating` `=` `` $gating^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

def MoE_CombineOp : MoE_Op<"combine"> {
  let summary = "weighted sum of expert outputs back into token order";
  let description = [{
    The inverse of `moe.dispatch` (same `mode`): for every token t,

    ```
    out[t] = Σ_j  w(t, j) · expert_out[mapping[t, j]]
    ```

    summed in f32 in increasing j, starting from 0.0, each product and sum
    rounded to f32 (no fused multiply-add), then rounded once to the element
    type of `expert_out`. The order is fixed, so the result is
    bitwise reproducible. `expert_out` is indexed as the flat row list
    ([N, H], or [E, C, H] seen as [E·C, H]).

    - `dropless` and `capacity`: `mapping` and `weights` are [T, k];
      `w(t, j) = weights[t, j]`.
    - `expert_choice`: `mapping` is [T, E] (from `moe.dispatch`), `weights`
      is [E, C] (from `moe.route`), `w(t, e) = weights.flat[mapping[t, e]]`.

    An entry with `mapping[t, j] = -1` (dropped) contributes 0, or
    `w(t, j) · passthrough[t]` when `passthrough` ([T, H], normally the MoE
    input) is given: HF Switch Transformers' rule before its 2025 fix, where
    a dropped token's MoE output is its own hidden state scaled by its
    router probability (current HF gives 0).

    The f32 sum in slot order is our fixed order; HF sums in the model dtype
    in expert order, so bf16 results are close to HF's, not bit-identical.

    Example:
    ```mlir
    %y = moe.combine dropless %expert_out, %map, %w
        : (tensor<?x4096xbf16>, tensor<?x2xi32>, tensor<?x2xf32>)
        -> tensor<?x4096xbf16>
    ```
  }];

  let arguments = (ins
    MoE_FloatTensor:$expert_out,
    MoE_I32Tensor:$mapping,
    MoE_F32Tensor:$weights,
    Optional<MoE_FloatTensor>:$passthrough,
    MoE_DispatchModeAttr:$mode
  );
  let results = (outs MoE_FloatTensor:$result);

  let assemblyFormat = [{
    `` $mode $expert_out `,` $mapping `,` $weights
    (`passthrough` `(` $passthrough^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// moe.routed_ffn
//===----------------------------------------------------------------------===//

def MoE_RoutedFfnOp : MoE_Op<"routed_ffn", [AttrSizedOperandSegments]> {
  let summary = "dispatch, expert FFNs and combine of a dropless layer in one";
  let description = [{
    The routed experts of a dropless MoE layer as one op: with
    `E = fc1.dim(0)`,

    ```
    rows, counts, map = moe.dispatch dropless input, indices experts = E
    y = moe.expert_ffn rows, counts <the FFN of this op>
    result = moe.combine dropless y, map, weights
    ```

    that is, `result[t] = Σ_j weights[t, j] · FFN_{indices[t, j]}(input[t])`
    with exactly the bits of those three ops: each expert's FFN output is
    rounded to the element type of `input`, then summed in f32 in increasing
    j from 0.0 and rounded once; an index outside [0, E) contributes 0.

    `moe-fuse-dispatch-combine` writes it. Its lowering reads each expert's
    rows from `input` where they are (no permuted copy of the hidden states)
    and sums each down-projection tile into the tokens' rows while it is in
    cache (no [T·k, H] expert output in memory), where the grouped vector
    kernel applies (static weights, I and H multiples of 16); elsewhere it
    lowers as the three ops.

    Operands: `input` [T, H], `indices` [T, k] i32 expert ids, `weights`
    [T, k] f32 (from `moe.route`), and the stacked weights of
    `moe.expert_ffn` ([E, ...]).
  }] # MoE_FfnDescription # [{

    Example (Mixtral experts):
    ```mlir
    %y = moe.routed_ffn %x, %ids, %w fc1(%w1) fc3(%w3) fc2(%w2)
        act = silu gating = separate
        : (tensor<?x4096xbf16>, tensor<?x2xi32>, tensor<?x2xf32>,
           tensor<8x14336x4096xbf16>, tensor<8x4096x14336xbf16>,
           tensor<8x14336x4096xbf16>) -> tensor<?x4096xbf16>
    ```
  }];

  let arguments = !con((ins
    MoE_FloatTensor:$input,
    MoE_I32Tensor:$indices,
    MoE_F32Tensor:$weights,
    MoE_FloatTensor:$fc1,
    MoE_FloatTensor:$fc2,
    Optional<MoE_FloatTensor>:$fc3,
    Optional<MoE_FloatTensor>:$fc1_bias,
    Optional<MoE_FloatTensor>:$fc2_bias,
    Optional<MoE_FloatTensor>:$fc3_bias), MoE_FfnAttrs);
  let results = (outs MoE_FloatTensor:$result);

  let assemblyFormat = [{
    $input `,` $indices `,` $weights
    `fc1` `(` $fc1 `)` (`fc3` `(` $fc3^ `)`)? `fc2` `(` $fc2 `)`
    (`fc1_bias` `(` $fc1_bias^ `)`)? (`fc3_bias` `(` $fc3_bias^ `)`)?
    (`fc2_bias` `(` $fc2_bias^ `)`)?
    `act` `=` `` $activation (`gating` `=` `` $gating^)?
    attr-dict `:` functional-type(operands, results)
  }];

  let extraClassDeclaration = [{
    /// Number of experts E (the leading size of the stacked weights).
    int64_t getNumExperts();
  }];
}

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

def MoE_SharedExpertOp : MoE_Op<"shared_expert", [AttrSizedOperandSegments]> {
  let summary = "an FFN applied to every token, optionally sigmoid-gated";
  let description = [{
    A shared (always-selected) expert: `out[t] = g(t) · FFN(input[t])` with
    `g(t) = sigmoid(input[t] · gateᵀ)` (computed in f32) when `gate` ([1, H],
    Qwen2-MoE's `shared_expert_gate`) is given, else 1 (DeepSeek's
    `n_shared_experts` merged into one FFN of their total width). The result
    [T, H] is added to the routed output by the model (`arith.addf`, routed
    output first, as HF does). Without a gate the op is also a model's dense
    MLP (DeepSeek's first_k_dense_replace layers, Qwen2's mlp_only_layers).

    Weights: `fc1` [I, H] (or [2I, H] with `concatenated`/`interleaved`
    gating), `fc3` [I, H] (only with `separate` gating), `fc2` [H, I];
    biases `fc1_bias` [I or 2I], `fc3_bias` [I], `fc2_bias` [H].
  }] # MoE_FfnDescription # [{

    Example (Qwen2-MoE):
    ```mlir
    %s = moe.shared_expert %x fc1(%g) fc3(%u) fc2(%d) gate(%sg)
        act = silu gating = separate
        : (tensor<?x2048xbf16>, tensor<5632x2048xbf16>, tensor<2048x5632xbf16>,
           tensor<5632x2048xbf16>, tensor<1x2048xbf16>) -> tensor<?x2048xbf16>
    ```
  }];

  let arguments = !con((ins
    MoE_FloatTensor:$input,
    MoE_FloatTensor:$fc1,
    MoE_FloatTensor:$fc2,
    Optional<MoE_FloatTensor>:$fc3,
    Optional<MoE_FloatTensor>:$fc1_bias,
    Optional<MoE_FloatTensor>:$fc2_bias,
    Optional<MoE_FloatTensor>:$fc3_bias,
    Optional<MoE_FloatTensor>:$gate), MoE_FfnAttrs);
  let results = (outs MoE_FloatTensor:$result);

  let assemblyFormat = [{
    $input
    `fc1` `(` $fc1 `)` (`fc3` `(` $fc3^ `)`)? `fc2` `(` $fc2 `)`
    (`fc1_bias` `(` $fc1_bias^ `)`)? (`fc3_bias` `(` $fc3_bias^ `)`)?
    (`fc2_bias` `(` $fc2_bias^ `)`)? (`gate` `(` $gate^ `)`)?
    `act` `=` `` $activation (`gating` `=` `` $gating^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// moe.stack_experts
//===----------------------------------------------------------------------===//

def MoE_StackExpertsOp : MoE_Op<"stack_experts"> {
  let summary = "routed experts' weights with a shared expert's appended";
  let description = [{
    The stacked weights of E routed experts ([E, R, C]) followed by those of
    a shared expert ([R', C']) cut into `m` equal experts along
    `split_dim` (0: rows, R' = m · R; 1: columns, C' = m · C; the other
    size equal): result [E + m, R, C] with `result[e] = routed[e]` for
    e < E and `result[E + j]` the j-th chunk of `shared`. Splitting is exact
    for an FFN: `fc2 · act(fc1 · x)` over I' = m · I intermediate features
    is the sum of the m FFNs over consecutive chunks of I features (fc1 and
    fc3 cut by rows, fc2 by columns).

    `moe-fuse-shared-expert` writes it to run a shared expert as m more
    always-selected slots of the routed grouped FFN. The grouped FFN's
    lowering reads the routed and shared weights where they are; any other
    use copies them into one tensor.

    Example (DeepSeek-V2: a shared FFN twice the routed width):
    ```mlir
    %fc2 = moe.stack_experts %routed_fc2, %shared_fc2 {split_dim = 1}
        : (tensor<160x5120x1536xbf16>, tensor<5120x3072xbf16>)
        -> tensor<162x5120x1536xbf16>
    ```
  }];

  let arguments = (ins
    MoE_FloatTensor:$routed,
    MoE_FloatTensor:$shared,
    ConfinedAttr<I64Attr, [IntMinValue<0>, IntMaxValue<1>]>:$split_dim
  );
  let results = (outs MoE_FloatTensor:$result);

  let assemblyFormat = [{
    $routed `,` $shared attr-dict `:` functional-type(operands, results)
  }];

  let extraClassDeclaration = [{
    /// The number m of experts the shared matrix is cut into.
    int64_t getNumSharedExperts();
  }];
}

include "moe-mlir/Dialect/MoE/IR/MoEParallelOps.td"

#endif // MOE_MLIR_DIALECT_MOE_IR_MOEOPS_TD
