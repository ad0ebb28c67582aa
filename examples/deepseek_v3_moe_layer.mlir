// A DeepSeek-V3 MoE block: 256 routed experts, k = 8, sigmoid scores,
// e_score_correction_bias used only to choose, 8 groups of 32 experts with
// the 4 best groups kept (group score = sum of the two best experts),
// weights renormalized (+1e-20) and scaled by routed_scaling_factor 2.5,
// plus one ungated shared expert added to the routed output.

func.func @deepseek_v3_moe(
    %hidden: tensor<?x7168xbf16>,
    %gate: tensor<256x7168xf32>,
    %bias: tensor<256xf32>,
    %gate_proj: tensor<256x2048x7168xbf16>,
    %down_proj: tensor<256x7168x2048xbf16>,
    %up_proj: tensor<256x2048x7168xbf16>,
    %shared_gate_proj: tensor<2048x7168xbf16>,
    %shared_down_proj: tensor<7168x2048xbf16>,
    %shared_up_proj: tensor<2048x7168xbf16>) -> tensor<?x7168xbf16> {
  %ids, %weights = moe.route %hidden weight(%gate) selection_bias(%bias)
      k = 8 scoring = sigmoid
      {n_group = 8 : i64, topk_group = 4 : i64,
       group_score = #moe.group_score<top2_sum>,
       renormalize, renormalize_epsilon = 1.0e-20 : f32,
       routed_scaling_factor = 2.5 : f32}
      : (tensor<?x7168xbf16>, tensor<256x7168xf32>, tensor<256xf32>)
      -> (tensor<?x8xi32>, tensor<?x8xf32>)
  %rows, %counts, %mapping = moe.dispatch dropless %hidden, %ids experts = 256
      : (tensor<?x7168xbf16>, tensor<?x8xi32>)
      -> (tensor<?x7168xbf16>, tensor<256xi32>, tensor<?x8xi32>)
  %expert_out = moe.expert_ffn %rows, %counts
      fc1(%gate_proj) fc3(%up_proj) fc2(%down_proj) act = silu gating = separate
      : (tensor<?x7168xbf16>, tensor<256xi32>, tensor<256x2048x7168xbf16>,
         tensor<256x7168x2048xbf16>, tensor<256x2048x7168xbf16>)
      -> tensor<?x7168xbf16>
  %routed = moe.combine dropless %expert_out, %mapping, %weights
      : (tensor<?x7168xbf16>, tensor<?x8xi32>, tensor<?x8xf32>)
      -> tensor<?x7168xbf16>
  %shared = moe.shared_expert %hidden
      fc1(%shared_gate_proj) fc3(%shared_up_proj) fc2(%shared_down_proj)
      act = silu gating = separate
      : (tensor<?x7168xbf16>, tensor<2048x7168xbf16>, tensor<7168x2048xbf16>,
         tensor<2048x7168xbf16>) -> tensor<?x7168xbf16>
  %out = arith.addf %routed, %shared : tensor<?x7168xbf16>
  return %out : tensor<?x7168xbf16>
}
