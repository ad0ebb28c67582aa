//===- MoEAttrs.td - moe dialect enums and attributes ------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_MLIR_DIALECT_MOE_IR_MOEATTRS_TD

include "moe-mlir/Dialect/MoE/IR/MoEDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

class MoE_Enum<string name, string summary, list<I32EnumAttrCase> cases>
    : I32EnumAttr<name, summary, cases> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moe_mlir::moe";
}

class MoE_EnumAttr<EnumAttrInfo enumInfo, string mnemonic>
    : EnumAttr<MoE_Dialect, enumInfo, mnemonic> {
  let assemblyFormat = "`<` $value `>`";
}

// Enums that appear as keywords in an op's custom syntax print bare.
class MoE_KeywordEnumAttr<EnumAttrInfo enumInfo, string mnemonic>
    : EnumAttr<MoE_Dialect, enumInfo, mnemonic> {
  let assemblyFormat = "$value";
}

def MoE_Scoring : MoE_Enum<"Scoring", "router scoring function", [
  // p = softmax(logits) over all E experts; choose the top-k of p.
  I32EnumAttrCase<"Softmax", 0, "softmax">,
  // s = sigmoid(logits) per expert; choose the top-k of s (+ selection bias).
  I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
  // choose the top-k logits; weights = softmax over the k chosen logits.
  I32EnumAttrCase<"TopkSoftmax", 2, "topk_softmax">
]>;
def MoE_ScoringAttr : MoE_KeywordEnumAttr<MoE_Scoring, "scoring">;

def MoE_RoutingMode : MoE_Enum<"RoutingMode", "who chooses", [
  // Every token chooses k experts.
  I32EnumAttrCase<"TokenChoice", 0, "token_choice">,
  // Every expert chooses C tokens.
  I32EnumAttrCase<"ExpertChoice", 1, "expert_choice">
]>;
def MoE_RoutingModeAttr : MoE_EnumAttr<MoE_RoutingMode, "routing_mode">;

def MoE_GroupScore : MoE_Enum<"GroupScore", "score of an expert group", [
  // The largest selection score in the group (DeepSeek-V2).
  I32EnumAttrCase<"Max", 0, "max">,
  // The sum of the two largest selection scores in the group (DeepSeek-V3).
  I32EnumAttrCase<"Top2Sum", 1, "top2_sum">
]>;
def MoE_GroupScoreAttr : MoE_EnumAttr<MoE_GroupScore, "group_score">;

def MoE_MaskFill : MoE_Enum<"MaskFill",
    "selection score given to experts of groups that were not kept", [
  // -inf: a masked expert can never be chosen (DeepSeek's current
  // inference code; HF deepseek_v3 since its parity fix of 2026).
  I32EnumAttrCase<"NegInf", 0, "neg_inf">,
  // 0.0: HF deepseek_v3 before that fix and the hub modeling_deepseek.py
  // files; differs from -inf only when a kept selection score is negative.
  I32EnumAttrCase<"Zero", 1, "zero">
]>;
def MoE_MaskFillAttr : MoE_EnumAttr<MoE_MaskFill, "mask_fill">;

def MoE_DispatchMode : MoE_Enum<"DispatchMode", "layout of dispatched rows", [
  // [T*k, H] rows grouped by expert, nothing dropped by the dispatch.
  I32EnumAttrCase<"Dropless", 0, "dropless">,
  // [E, C, H] slots; assignments past an expert's capacity are dropped.
  I32EnumAttrCase<"Capacity", 1, "capacity">,
  // [E, C, H] rows chosen by the experts (expert-choice routing).
  I32EnumAttrCase<"ExpertChoice", 2, "expert_choice">
]>;
def MoE_DispatchModeAttr : MoE_KeywordEnumAttr<MoE_DispatchMode, "dispatch_mode">;

def MoE_Activation : MoE_Enum<"Activation", "expert FFN activation", [
  // x * sigmoid(alpha * x)   (alpha = activation_alpha, 1 by default;
  // ONNX Runtime uses alpha only in its gated swiglu)
  I32EnumAttrCase<"Silu", 0, "silu">,
  // 0.5 * x * (1 + erf(x / sqrt(2)))
  I32EnumAttrCase<"Gelu", 1, "gelu">,
  // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)));
  // ONNX Runtime's MoE "gelu" is this one
  I32EnumAttrCase<"GeluTanh", 2, "gelu_tanh">,
  // max(x, 0)
  I32EnumAttrCase<"Relu", 3, "relu">,
  // x
  I32EnumAttrCase<"Identity", 4, "identity">
]>;
def MoE_ActivationAttr : MoE_KeywordEnumAttr<MoE_Activation, "activation">;

def MoE_Gating : MoE_Enum<"Gating", "gated-linear-unit form of an FFN", [
  // h = act(fc1 x): a two-matrix FFN.
  I32EnumAttrCase<"None", 0, "none">,
  // h = act(fc1 x) * (fc3 x): gate and up in separate matrices (Mixtral's
  // w1/w3, HF gate_proj/up_proj).
  I32EnumAttrCase<"Separate", 1, "separate">,
  // fc1 is [2I, H]: rows [0, I) are the gate, rows [I, 2I) the up projection.
  I32EnumAttrCase<"Concatenated", 2, "concatenated">,
  // fc1 is [2I, H]: even rows are the gate, odd rows the up projection
  // (ONNX Runtime's swiglu_fusion = 1).
  I32EnumAttrCase<"Interleaved", 3, "interleaved">
]>;
def MoE_GatingAttr : MoE_KeywordEnumAttr<MoE_Gating, "gating">;

#endif // MOE_MLIR_DIALECT_MOE_IR_MOEATTRS_TD
