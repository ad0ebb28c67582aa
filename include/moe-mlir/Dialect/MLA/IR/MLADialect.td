//===- MLADialect.td - the mla dialect ---------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_IR_MLADIALECT_TD
#define MOE_MLIR_DIALECT_MLA_IR_MLADIALECT_TD

include "mlir/IR/OpBase.td"

def MLA_Dialect : Dialect {
  let name = "mla";
  let cppNamespace = "::moe_mlir::mla";
  let summary = "multi-head latent attention (DeepSeek-V2/V3)";
  let description = [{
    The `mla` dialect describes DeepSeek's multi-head latent attention, whose
    KV cache holds one low-rank latent vector `c_kv` and one shared RoPE key
    `k_rope` per token instead of per-head keys and values. Ops have value
    semantics: a step takes the cache so far and returns the extended cache,
    so one op expresses both prefill (empty cache in) and decode.
  }];
  let useDefaultAttributePrinterParser = 1;
}

#endif // MOE_MLIR_DIALECT_MLA_IR_MLADIALECT_TD
