// A Mixtral-8x7B sparse MoE block (one decoder layer's FFN), written in the
// moe dialect: softmax router over 8 experts, top-2, renormalized weights,
// SwiGLU experts (HF w1 = gate = fc1, w3 = up = fc3, w2 = down = fc2).
// The token count is dynamic; activations and weights are bf16; the router
// runs in f32 on logits rounded to bf16, as HF's gate nn.Linear does.

func.func @mixtral_moe(
    %hidden: tensor<?x4096xbf16>,
    %gate: tensor<8x4096xbf16>,
    %w1: tensor<8x14336x4096xbf16>,
    %w2: tensor<8x4096x14336xbf16>,
    %w3: tensor<8x14336x4096xbf16>) -> tensor<?x4096xbf16> {
  %ids, %weights = moe.route %hidden weight(%gate) k = 2 scoring = softmax
      {renormalize, round_logits}
      : (tensor<?x4096xbf16>, tensor<8x4096xbf16>)
      -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %mapping = moe.dispatch dropless %hidden, %ids experts = 8
      : (tensor<?x4096xbf16>, tensor<?x2xi32>)
      -> (tensor<?x4096xbf16>, tensor<8xi32>, tensor<?x2xi32>)
  %expert_out = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2)
      act = silu gating = separate
      : (tensor<?x4096xbf16>, tensor<8xi32>, tensor<8x14336x4096xbf16>,
         tensor<8x4096x14336xbf16>, tensor<8x14336x4096xbf16>)
      -> tensor<?x4096xbf16>
  %out = moe.combine dropless %expert_out, %mapping, %weights
      : (tensor<?x4096xbf16>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> tensor<?x4096xbf16>
  return %out : tensor<?x4096xbf16>
}
