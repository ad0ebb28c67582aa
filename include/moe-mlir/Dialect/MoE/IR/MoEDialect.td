//===- MoEDialect.td - the moe dialect ---------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_IR_MOEDIALECT_TD
#define MOE_MLIR_DIALECT_MOE_IR_MOEDIALECT_TD

include "mlir/IR/OpBase.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::moe_mlir::moe";
  let summary = "Mixture-of-Experts layers: routing, dispatch, expert FFNs, combine";
  let description = [{
    The `moe` dialect describes the sparse feed-forward block of
    Mixture-of-Experts language models at the level the models define it:

    ```
    route -> dispatch -> expert_ffn -> combine   (+ shared_expert)
    ```

    All ops have value (tensor) semantics and no side effects. Shapes use
    the notation T = tokens (static or dynamic), H = hidden size, E = routed
    experts, k = experts per token, I = expert intermediate size,
    C = per-expert capacity. Activations may be f32, f16 or bf16; router
    math is always carried out in f32 and routing weights are f32.

    The routing vocabulary is shared by the ops: an *assignment* is one
    (token, slot) pair chosen by the router; an assignment whose expert index
    is -1 is *dropped* (it reaches no expert and, unless `moe.combine` is
    given a passthrough operand, contributes 0 to the token's output).
  }];
  let useDefaultAttributePrinterParser = 1;
}

#endif // MOE_MLIR_DIALECT_MOE_IR_MOEDIALECT_TD
