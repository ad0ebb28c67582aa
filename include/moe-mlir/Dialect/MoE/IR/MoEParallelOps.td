//===- MoEParallelOps.td - moe expert-parallel operations --*- tablegen -*-===//
//
// Part of moe-mlir.
//
// The operations moe-expert-parallel rewrites an MoE layer into, for one
// rank of an expert-parallel group of N ranks. They communicate with the
// other ranks (at run time, through the runtime's all-to-all; see
// moe-mlir/Runtime/ExpertParallel.h), so they are not Pure: they are never
// removed, duplicated or reordered. Every rank runs the same program on the
// same tokens; token t of T lives on its home rank floor(t * N / T).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_IR_MOEPARALLELOPS_TD
#define MOE_MLIR_DIALECT_MOE_IR_MOEPARALLELOPS_TD

class MoE_ParallelOp<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits> {
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// moe.ep_dispatch
//===----------------------------------------------------------------------===//

def MoE_EpDispatchOp : MoE_ParallelOp<"ep_dispatch"> {
  let summary = "send token rows to the ranks that hold their experts";
  let description = [{
    The ragged all-to-all of expert parallelism. `slot_experts` lists the
    expert of every global slot: `ranks` × S entries, rank-major, where
    slot `r · S + s` is local slot s of rank r (-1: an unused slot). An
    expert may have several slots (redundant replicas); its replicas are
    its slots in increasing order, and the assignment (t, j) of token t to
    expert e = `indices[t, j]` is served by replica `t mod replicas(e)` of e.
    Assignments outside [0, `num_experts`) are dropped, as `moe.dispatch`
    drops them.

    Each rank sends the rows of its home tokens, one per assignment, to the
    ranks of the chosen replicas (counts are exchanged first) and receives
    `rows` ([T·k, H], like a dropless `moe.dispatch`): grouped by local slot
    in increasing order, within a slot in increasing (token, j) order, so
    `counts` ([S]) are the rows of each local slot and rows past their sum
    are unspecified. `source` ([T·k]) holds `t · k + j` of each received row
    and -1 past the last. A `moe.expert_ffn` with this rank's slot weights
    ([S, ...]) then computes exactly the rows an unsharded layer computes.

    ```mlir
    %rows, %counts, %src = moe.ep_dispatch %x, %ids ranks = 2 experts = 3
        slot_experts = [0, 1, 2, -1]
        : (tensor<?x64xf32>, tensor<?x2xi32>)
        -> (tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32>)
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_I32Tensor:$indices,
                       MoE_PositiveI64:$ranks, MoE_PositiveI64:$num_experts,
                       DenseI32ArrayAttr:$slot_experts);
  let results = (outs MoE_FloatTensor:$rows, MoE_I32Tensor:$counts,
                      MoE_I32Tensor:$source);
  let assemblyFormat = [{
    $input `,` $indices `ranks` `=` $ranks `experts` `=` $num_experts
    `slot_experts` `=` $slot_experts
    attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    /// Local slots per rank, S.
    int64_t getSlotsPerRank() {
      return static_cast<int64_t>(getSlotExperts().size()) /
             static_cast<int64_t>(getRanks());
    }
  }];
}

//===----------------------------------------------------------------------===//
// moe.ep_return
//===----------------------------------------------------------------------===//

def MoE_EpReturnOp : MoE_ParallelOp<"ep_return"> {
  let summary = "send expert outputs back to their tokens' home ranks";
  let description = [{
    The all-to-all back. `expert_out` ([T·k, H]) holds the expert output of
    each row `moe.ep_dispatch` received (`source` is its `source`; the op
    must follow that dispatch with no other `moe.ep_dispatch` in between).
    Returns this rank's home rows [Th·k, H], Th its home tokens: row
    `(t - first home token) · k + j` is the output of assignment (t, j);
    rows of dropped assignments are zero. `indices` ([T, k]) gives T and k.
  }];
  let arguments = (ins MoE_FloatTensor:$expert_out, MoE_I32Tensor:$source,
                       MoE_I32Tensor:$indices, MoE_PositiveI64:$ranks);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $source `,` $indices `ranks` `=` $ranks
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// moe.ep_home
//===----------------------------------------------------------------------===//

def MoE_EpHomeOp : MoE_ParallelOp<"ep_home", [AllElementTypesMatch<["input", "result"]>]> {
  let summary = "this rank's home tokens of a token-major tensor";
  let description = [{
    The rows `[ceil(r · T / N), ceil((r + 1) · T / N))` of the leading (token)
    dimension of `input`, r this rank, N = `ranks`.
  }];
  let arguments = (ins AnyRankedTensor:$input, MoE_PositiveI64:$ranks);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input `ranks` `=` $ranks attr-dict `:` type($input) `->` type($result)
  }];
}

//===----------------------------------------------------------------------===//
// moe.ep_all_gather
//===----------------------------------------------------------------------===//

def MoE_EpAllGatherOp : MoE_ParallelOp<"ep_all_gather"> {
  let summary = "every rank's home rows, in token order, on every rank";
  let description = [{
    `input` is this rank's home rows [Th, H]; the result [T, H] (T =
    `tokens`) holds every rank's home rows in token order, identical on all
    ranks.
  }];
  let arguments = (ins MoE_FloatTensor:$input, Index:$tokens,
                       MoE_PositiveI64:$ranks);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `tokens` `(` $tokens `)` `ranks` `=` $ranks
    attr-dict `:` type($input) `->` type($result)
  }];
}

//===----------------------------------------------------------------------===//
// moe.ep_slots
//===----------------------------------------------------------------------===//

def MoE_EpSlotsOp : MoE_ParallelOp<"ep_slots"> {
  let summary = "this rank's expert slots of an expert-stacked tensor";
  let description = [{
    `result[s] = input[slot_experts[r · S + s]]` for this rank r and its S
    local slots (`slot_experts` as in `moe.ep_dispatch`, `ranks` × S
    entries); an unused slot (-1) holds unspecified values (no row is ever
    routed to it). `moe-expert-parallel` uses it for expert weights that
    the function computes (dequantized, transposed, ...) rather than takes
    as arguments: every rank then computes all E experts' weights and keeps
    its slots. Weights that are arguments are bound per rank instead.
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_PositiveI64:$ranks,
                       DenseI32ArrayAttr:$slot_experts);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `ranks` `=` $ranks `slot_experts` `=` $slot_experts
    attr-dict `:` type($input) `->` type($result)
  }];
}

#endif // MOE_MLIR_DIALECT_MOE_IR_MOEPARALLELOPS_TD
