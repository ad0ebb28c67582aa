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
  let summary =
      "attention with KV caches: latent (MLA) and grouped-query (GQA)";
  let description = [{
    The `mla` dialect describes the attention of decoder layers together
    with their KV caches:

    - `mla.attention`: DeepSeek's multi-head latent attention, whose cache
      holds one low-rank latent vector `c_kv` and one shared RoPE key
      `k_rope` per token instead of per-head keys and values;
    - `mla.gqa_attention`: grouped-query attention (Mixtral, Qwen2-MoE,
      Qwen3-MoE; multi-head attention when every query head has its own
      KV head), whose cache holds the per-KV-head keys (after RoPE) and
      values.

    Ops have value semantics: a step takes the cache so far and returns
    the extended cache, so one op expresses both prefill (empty cache in)
    and decode.
  }];
  let useDefaultAttributePrinterParser = 1;
}

#endif // MOE_MLIR_DIALECT_MLA_IR_MLADIALECT_TD
