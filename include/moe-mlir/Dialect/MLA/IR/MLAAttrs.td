//===- MLAAttrs.td - mla dialect attributes ----------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_IR_MLAATTRS_TD
#define MOE_MLIR_DIALECT_MLA_IR_MLAATTRS_TD

include "moe-mlir/Dialect/MLA/IR/MLADialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

// A real number stored as an f64 APFloat (hashable, bitwise comparable),
// written as a plain float literal.
class MLA_RealParameter<string default = ""> :
    AttrOrTypeParameter<"::llvm::APFloat", "a real number"> {
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
    double value;
    if ($_parser.parseFloat(value))
      return ::mlir::failure();
    return ::llvm::APFloat(value);
  }() }];
  let printer = "$_printer << $_self.convertToDouble()";
  let defaultValue = !if(!empty(default), "", "::llvm::APFloat(" # default # ")");
}

def MLA_YarnAttr : AttrDef<MLA_Dialect, "Yarn"> {
  let mnemonic = "yarn";
  let summary = "YaRN RoPE scaling (rope_scaling.type = yarn)";
  let description = [{
    The parameters of a `rope_scaling: {type: yarn, ...}` config entry. With
    rotary dimension d and base θ, frequency i (0 ≤ i < d/2) is

    ```
    f_extra = θ^(-2i/d),  f_inter = f_extra / factor
    corr(b) = d · ln(original_max_position_embeddings / (2π b)) / (2 ln θ)
    low = max(floor(corr(beta_fast)), 0), high = min(ceil(corr(beta_slow)), d-1)
    if high == low: high += 0.001
    ramp_i = clamp((i - low) / (high - low), 0, 1)
    f_i = f_inter · ramp_i + f_extra · (1 - ramp_i)
    ```

    cos and sin are multiplied by `m(factor, mscale) / m(factor, mscale_all_dim)`
    when both `mscale` and `mscale_all_dim` are non-zero, else by
    `m(factor, 1)` (HF's `_compute_yarn_parameters`), and, when
    `mscale_all_dim` is non-zero, the softmax scale by
    `m(factor, mscale_all_dim)²`, with `m(s, a) = 0.1 · a · ln(s) + 1` for
    s > 1 and 1 otherwise. (HF's `attention_factor` override and
    `truncate = false` are not expressible yet.)
  }];
  let parameters = (ins
    MLA_RealParameter<>:$factor,
    "int64_t":$original_max_position_embeddings,
    MLA_RealParameter<"32.0">:$beta_fast,
    MLA_RealParameter<"1.0">:$beta_slow,
    MLA_RealParameter<"1.0">:$mscale,
    MLA_RealParameter<"0.0">:$mscale_all_dim
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def MLA_Absorption : I32EnumAttr<"Absorption",
    "how mla.attention applies kv_b_proj", [
  // Expand k_nope and v from every cached and new latent.
  I32EnumAttrCase<"Naive", 0, "naive">,
  // Fold W_kb into the query and W_vb into the output: attend over the
  // latents themselves.
  I32EnumAttrCase<"Absorbed", 1, "absorbed">,
  // Choose per call, from the new and total token counts (see the op).
  I32EnumAttrCase<"Cost", 2, "cost">
]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moe_mlir::mla";
}
def MLA_AbsorptionAttr : EnumAttr<MLA_Dialect, MLA_Absorption, "absorption"> {
  let assemblyFormat = "`<` $value `>`";
}

#endif // MOE_MLIR_DIALECT_MLA_IR_MLAATTRS_TD
