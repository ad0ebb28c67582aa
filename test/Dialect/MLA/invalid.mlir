// Diagnostics of mla.attention (AttentionOp::verify, the ODS constraints and
// the result-type inference check), of #mla.yarn (YarnAttr::verify) and of
// mla.gqa_attention (its own section at the end). For mla.attention, unless
// a case says otherwise the sizes are those of ops.mlir: H = 64,
// N = 4, D_n = 16, D_r = 8, D_v = 16, R_kv = 32, R_q = 24, S = 5, P = 0.

// RUN: moe-opt %s --split-input-file --verify-diagnostics

// qk_rope_head_dim must be even.
func.func @odd_rope_head_dim(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x7xf32>,
                             %wq: tensor<92x64xf32>, %wkva: tensor<39x64xf32>, %kvn: tensor<32xf32>,
                             %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op qk_rope_head_dim must be even (RoPE rotates pairs), got 7}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 7 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x7xf32>, tensor<92x64xf32>,
         tensor<39x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x7xf32>)
  return
}

// -----

// hidden must have rank 2 [S, H].
func.func @hidden_rank(%x: tensor<64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                       %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                       %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'hidden' must have rank 2 [S, H], got 'tensor<64xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<?x?xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return
}

// -----

// q_proj and the q LoRA triple are mutually exclusive.
func.func @both_query_forms(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                            %wq: tensor<96x64xf32>,
                            %wqa: tensor<24x64xf32>, %qn: tensor<24xf32>, %wqb: tensor<96x24xf32>,
                            %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                            %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op takes either 'q_proj' or the q LoRA operands ('q_a_proj', 'q_a_norm', 'q_b_proj'), not both}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) q_lora(%wqa, %qn, %wqb)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<24x64xf32>, tensor<24xf32>, tensor<96x24xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_proj with only part of the q LoRA triple is still "both" (generic form:
// the custom syntax takes the triple as a whole).
func.func @q_proj_and_partial_lora(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                   %wq: tensor<96x64xf32>, %wqa: tensor<24x64xf32>,
                                   %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                   %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op takes either 'q_proj' or the q LoRA operands ('q_a_proj', 'q_a_norm', 'q_b_proj'), not both}}
  %0:3 = "mla.attention"(%x, %ckv, %kr, %wq, %wqa, %wkva, %kvn, %wkvb, %wo)
      <{num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1>}>
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>, tensor<24x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// One of the two query forms is required.
func.func @no_query_form(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                         %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                         %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op requires 'q_proj' or the q LoRA operands ('q_a_proj', 'q_a_norm', 'q_b_proj')}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// A partial q LoRA triple (q_b_proj missing; generic form).
func.func @partial_q_lora(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wqa: tensor<24x64xf32>, %qn: tensor<24xf32>,
                          %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op q LoRA requires all of 'q_a_proj', 'q_a_norm' and 'q_b_proj'}}
  %0:3 = "mla.attention"(%x, %ckv, %kr, %wqa, %qn, %wkva, %kvn, %wkvb, %wo)
      <{num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1>}>
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xf32>, tensor<24xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// A partial q LoRA triple with only q_b_proj (q_a_proj, from which R_q is
// read, missing; generic form).
func.func @partial_q_lora_no_q_a_proj(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                      %wqb: tensor<96x24xf32>,
                                      %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                      %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op q LoRA requires all of 'q_a_proj', 'q_a_norm' and 'q_b_proj'}}
  %0:3 = "mla.attention"(%x, %ckv, %kr, %wqb, %wkva, %kvn, %wkvb, %wo)
      <{num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1>}>
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x24xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_proj must be [N*(D_n+D_r), H].
func.func @q_proj_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                        %wq: tensor<64x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                        %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_proj' must have shape [N*(D_n+D_r)=96, H=64], got 'tensor<64x64xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<64x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_a_proj must have rank 2 [R_q, H].
func.func @q_a_proj_rank(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                         %wqa: tensor<24xf32>, %qn: tensor<24xf32>, %wqb: tensor<96x24xf32>,
                         %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                         %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_a_proj' must have rank 2 [R_q, H], got 'tensor<24xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24xf32>, tensor<24xf32>,
         tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_a_proj must be [R_q, H]: its H differs from hidden's.
func.func @q_a_proj_hidden_size(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                %wqa: tensor<24x48xf32>, %qn: tensor<24xf32>, %wqb: tensor<96x24xf32>,
                                %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_a_proj' must have shape [R_q=24, H=64], got 'tensor<24x48xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x48xf32>, tensor<24xf32>,
         tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_a_norm must be [R_q], R_q taken from q_a_proj.
func.func @q_a_norm_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wqa: tensor<24x64xf32>, %qn: tensor<16xf32>, %wqb: tensor<96x24xf32>,
                          %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_a_norm' must have shape [R_q=24], got 'tensor<16xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xf32>, tensor<16xf32>,
         tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// q_b_proj must be [N*(D_n+D_r), R_q] (here transposed).
func.func @q_b_proj_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wqa: tensor<24x64xf32>, %qn: tensor<24xf32>, %wqb: tensor<24x96xf32>,
                          %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_b_proj' must have shape [N*(D_n+D_r)=96, R_q=24], got 'tensor<24x96xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xf32>, tensor<24xf32>,
         tensor<24x96xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// kv_a_norm must have rank 1 [R_kv].
func.func @kv_a_norm_rank(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<1x32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'kv_a_norm' must have rank 1 [R_kv], got 'tensor<1x32xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<1x32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x?xf32>, tensor<5x8xf32>)
  return
}

// -----

// kv_a_proj must be [R_kv+D_r, H]: here it lacks the D_r rope rows.
func.func @kv_a_proj_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                           %wq: tensor<96x64xf32>, %wkva: tensor<32x64xf32>, %kvn: tensor<32xf32>,
                           %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'kv_a_proj' must have shape [R_kv+D_r=40, H=64], got 'tensor<32x64xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<32x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// kv_b_proj must be [N*(D_n+D_v), R_kv]: here D_v = 8 instead of 16.
func.func @kv_b_proj_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                           %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                           %wkvb: tensor<96x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'kv_b_proj' must have shape [N*(D_n+D_v)=128, R_kv=32], got 'tensor<96x32xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<96x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// o_proj must be [H, N*D_v].
func.func @o_proj_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                        %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                        %wkvb: tensor<128x32xf32>, %wo: tensor<64x128xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'o_proj' must have shape [H=64, N*D_v=64], got 'tensor<64x128xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x128xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// c_kv_cache must have rank 2 [P, R_kv].
func.func @c_kv_cache_rank(%x: tensor<5x64xf32>, %ckv: tensor<32xf32>, %kr: tensor<0x8xf32>,
                           %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                           %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'c_kv_cache' must have rank 2 [P, R_kv], got 'tensor<32xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return
}

// -----

// c_kv_cache rows must have R_kv (kv_a_norm's size) entries.
func.func @c_kv_cache_latent_size(%x: tensor<5x64xf32>, %ckv: tensor<3x16xf32>, %kr: tensor<3x8xf32>,
                                  %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                  %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'c_kv_cache' must have shape [P=3, R_kv=32], got 'tensor<3x16xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<3x16xf32>, tensor<3x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>)
  return
}

// -----

// k_rope_cache must hold as many tokens (P) as c_kv_cache.
func.func @k_rope_cache_length(%x: tensor<5x64xf32>, %ckv: tensor<3x32xf32>, %kr: tensor<4x8xf32>,
                               %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                               %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'k_rope_cache' must have shape [P=3, D_r=8], got 'tensor<4x8xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<3x32xf32>, tensor<4x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>)
  return
}

// -----

// k_rope_cache rows must have D_r entries.
func.func @k_rope_cache_rope_size(%x: tensor<5x64xf32>, %ckv: tensor<?x32xf32>, %kr: tensor<?x16xf32>,
                                  %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                  %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'k_rope_cache' must have shape [P, D_r=8], got 'tensor<?x16xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<?x32xf32>, tensor<?x16xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return
}

// -----

// The two caches share one element type.
func.func @k_rope_cache_element_type(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xbf16>,
                                     %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                     %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'k_rope_cache' must have element type 'f32' (that of 'c_kv_cache'), got 'bf16'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xbf16>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xbf16>)
  return
}

// -----

// All weights share kv_a_proj's element type: a projection in f32 among
// bf16 weights.
func.func @weight_element_type_proj(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                    %wq: tensor<96x64xbf16>, %wkva: tensor<40x64xbf16>, %kvn: tensor<32xbf16>,
                                    %wkvb: tensor<128x32xbf16>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand 'o_proj' must have element type 'bf16' (that of 'kv_a_proj'), got 'f32'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xbf16>,
         tensor<40x64xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// All weights share kv_a_proj's element type, the norm weights included.
func.func @weight_element_type_norm(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                    %wqa: tensor<24x64xbf16>, %qn: tensor<24xf32>, %wqb: tensor<96x24xbf16>,
                                    %wkva: tensor<40x64xbf16>, %kvn: tensor<32xbf16>,
                                    %wkvb: tensor<128x32xbf16>, %wo: tensor<64x64xbf16>) {
  // expected-error @+1 {{'mla.attention' op operand 'q_a_norm' must have element type 'bf16' (that of 'kv_a_proj'), got 'f32'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xbf16>, tensor<24xf32>,
         tensor<96x24xbf16>, tensor<40x64xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<64x64xbf16>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// rms_norm_eps must be non-negative.
func.func @negative_rms_norm_eps(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                 %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                 %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op rms_norm_eps must be non-negative}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       rms_norm_eps = -1.0e-6 : f32}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// rms_norm_eps must be non-negative, which a NaN is not.
func.func @nan_rms_norm_eps(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                            %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                            %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op rms_norm_eps must be non-negative}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       rms_norm_eps = 0x7FC00000 : f32}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// rope_theta must be positive.
func.func @zero_rope_theta(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                           %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                           %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op rope_theta must be positive}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       rope_theta = 0.0 : f64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// softmax_scale, when given, must be positive.
func.func @zero_softmax_scale(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                              %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                              %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op softmax_scale must be positive}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       softmax_scale = 0.0 : f32}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// yarn: factor must be positive.
func.func @yarn_factor(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                       %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                       %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       // expected-error @+1 {{yarn factor must be positive, got 0.000000e+00}}
       yarn = #mla.yarn<factor = 0.0, original_max_position_embeddings = 4096>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// yarn: original_max_position_embeddings must be positive.
func.func @yarn_original_max_positions(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                       %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                       %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       // expected-error @+1 {{yarn original_max_position_embeddings must be positive, got -4096}}
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = -4096>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// yarn: beta_fast must be positive.
func.func @yarn_beta_fast(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       // expected-error @+1 {{yarn beta_fast and beta_slow must be positive, got -3.200000e+01 and 1.000000e+00}}
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096, beta_fast = -32.0>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// yarn: beta_slow must be positive.
func.func @yarn_beta_slow(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       // expected-error @+1 {{yarn beta_fast and beta_slow must be positive, got 3.200000e+01 and 0.000000e+00}}
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096, beta_slow = 0.0>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// Result types must be compatible with the inferred ones: the extended
// caches have P+S = 0+5 rows, not 4. (The InferTypeOpInterface verifier
// reports the mismatch, then that inference failed.)
func.func @result_shape(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                        %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                        %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+2 {{'mla.attention' op failed to infer returned types}}
  // expected-error @+1 {{'mla.attention' op inferred type(s) 'tensor<5x64xf32>', 'tensor<5x32xf32>', 'tensor<5x8xf32>' are incompatible with return type(s) of operation 'tensor<5x64xf32>', 'tensor<4x32xf32>', 'tensor<4x8xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<4x32xf32>, tensor<4x8xf32>)
  return
}

// -----

// Result types must be compatible with the inferred ones: the extended
// caches keep the caches' element type (bf16), not the activations' (f32).
func.func @result_element_type(%x: tensor<1x64xf32>, %ckv: tensor<?x32xbf16>, %kr: tensor<?x8xbf16>,
                               %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                               %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+2 {{'mla.attention' op failed to infer returned types}}
  // expected-error @+1 {{'mla.attention' op inferred type(s) 'tensor<1x64xf32>', 'tensor<?x32xbf16>', 'tensor<?x8xbf16>' are incompatible with return type(s) of operation 'tensor<1x64xf32>', 'tensor<?x32xf32>', 'tensor<?x8xf32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return
}

// -----

// ODS: num_heads must be a positive integer. The constraint is checked while
// parsing, at the attribute dictionary.
func.func @zero_num_heads(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      // expected-error @+1 {{attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
      {num_heads = 0 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// ODS: the same constraint in the generic form, checked by the verifier.
func.func @zero_num_heads_generic(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                  %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                  %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0:3 = "mla.attention"(%x, %ckv, %kr, %wq, %wkva, %kvn, %wkvb, %wo)
      <{num_heads = 0 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1>}>
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// ODS: operands are ranked float (f32, f16, bf16) tensors.
func.func @integer_hidden(%x: tensor<5x64xi32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.attention' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<5x64xi32>'}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xi32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xi32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// yarn: m(factor, mscale) = 0.1 * mscale * ln(factor) + 1 must stay positive
// (it divides the cos/sin correction).
func.func @yarn_mscale_all_dim(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                               %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                               %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       // expected-error @+1 {{yarn mscale_all_dim = -1.000000e+02 makes the magnitude correction 0.1 * mscale_all_dim * ln(factor) + 1 non-positive}}
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096, mscale_all_dim = -100.0>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

// Head counts and sizes are bounded so that N * (D_n + D_r) cannot overflow.
func.func @huge_heads(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                      %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                      %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{num_heads = 4611686018427387904 exceeds 16777216}}
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4611686018427387904 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return
}

// -----

//===----------------------------------------------------------------------===//
// mla.gqa_attention (GqaAttentionOp::verify, the ODS constraints and the
// result-type inference check). Unless a case says otherwise: H = 64,
// N = 4, KV = 2, D = 16, S = 5, P = 0.
//===----------------------------------------------------------------------===//

// Head counts and sizes are bounded so that N * D cannot overflow.
func.func @gqa_huge_heads(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op num_heads = 4611686018427387904 exceeds 16777216}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4611686018427387904 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// num_heads must be a multiple of num_kv_heads (every KV head serves N/KV
// query heads).
func.func @gqa_heads_not_multiple(
    %x: tensor<5x64xf32>, %kc: tensor<0x3x16xf32>, %vc: tensor<0x3x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<48x64xf32>, %wv: tensor<48x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op num_heads = 4 must be a multiple of num_kv_heads = 3}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 3 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x3x16xf32>, tensor<0x3x16xf32>, tensor<64x64xf32>,
         tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x3x16xf32>, tensor<5x3x16xf32>)
  return
}

// -----

// head_dim must be even (RoPE rotates the pairs (x[i], x[i + D/2])).
func.func @gqa_odd_head_dim(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x15xf32>, %vc: tensor<0x2x15xf32>, %wq: tensor<60x64xf32>,
    %wk: tensor<30x64xf32>, %wv: tensor<30x64xf32>, %wo: tensor<64x60xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op head_dim must be even (RoPE rotates pairs), got 15}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 15 : i64}
      : (tensor<5x64xf32>, tensor<0x2x15xf32>, tensor<0x2x15xf32>, tensor<60x64xf32>,
         tensor<30x64xf32>, tensor<30x64xf32>, tensor<64x60xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x15xf32>, tensor<5x2x15xf32>)
  return
}

// -----

// hidden must have rank 2 [S, H].
func.func @gqa_hidden_rank(
    %x: tensor<64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'hidden' must have rank 2 [S, H], got 'tensor<64xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<?x?xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>)
  return
}

// -----

// q_proj must be [N*D, H].
func.func @gqa_q_proj_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<32x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'q_proj' must have shape [N*D=64, H=64], got 'tensor<32x64xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<32x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// k_proj must be [KV*D, H] (here it has the size of q_proj).
func.func @gqa_k_proj_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<64x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_proj' must have shape [KV*D=32, H=64], got 'tensor<64x64xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<64x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// v_proj must be [KV*D, H] (here transposed).
func.func @gqa_v_proj_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<64x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'v_proj' must have shape [KV*D=32, H=64], got 'tensor<64x32xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<64x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// o_proj must be [H, N*D].
func.func @gqa_o_proj_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x32xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'o_proj' must have shape [H=64, N*D=64], got 'tensor<64x32xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// The biases come all three or not at all (generic form: the custom syntax
// takes the triple as a whole).
func.func @gqa_partial_bias(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %bq: tensor<64xf32>,
    %bk: tensor<32xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op bias requires all of 'q_bias', 'k_bias' and 'v_bias'}}
  %0:3 = "mla.gqa_attention"(%x, %kc, %vc, %wq, %wk, %wv, %wo, %bq, %bk)
      <{num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0>}>
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<64xf32>,
         tensor<32xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// q_bias must be [N*D].
func.func @gqa_q_bias_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %bq: tensor<32xf32>,
    %bk: tensor<32xf32>, %bv: tensor<32xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'q_bias' must have shape [N*D=64], got 'tensor<32xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) bias(%bq, %bk, %bv)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<32xf32>,
         tensor<32xf32>, tensor<32xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// k_bias must be [KV*D].
func.func @gqa_k_bias_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %bq: tensor<64xf32>,
    %bk: tensor<64xf32>, %bv: tensor<32xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_bias' must have shape [KV*D=32], got 'tensor<64xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) bias(%bq, %bk, %bv)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<64xf32>,
         tensor<64xf32>, tensor<32xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// v_bias must be [KV*D].
func.func @gqa_v_bias_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %bq: tensor<64xf32>,
    %bk: tensor<32xf32>, %bv: tensor<1x32xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'v_bias' must have shape [KV*D=32], got 'tensor<1x32xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) bias(%bq, %bk, %bv)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<64xf32>,
         tensor<32xf32>, tensor<1x32xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// The QK norms come both or not at all (generic form).
func.func @gqa_partial_qk_norm(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %qn: tensor<16xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op qk_norm requires both 'q_norm' and 'k_norm'}}
  %0:3 = "mla.gqa_attention"(%x, %kc, %vc, %wq, %wk, %wv, %wo, %qn)
      <{num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64,
        operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0>}>
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<16xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// q_norm is per head: [D], not [N*D].
func.func @gqa_q_norm_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %qn: tensor<64xf32>,
    %kn: tensor<16xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'q_norm' must have shape [D=16], got 'tensor<64xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<64xf32>,
         tensor<16xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// k_norm is per head: [D].
func.func @gqa_k_norm_shape(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %qn: tensor<16xf32>,
    %kn: tensor<8xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_norm' must have shape [D=16], got 'tensor<8xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<16xf32>,
         tensor<8xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// k_cache must have rank 3 [P, KV, D].
func.func @gqa_k_cache_rank(
    %x: tensor<5x64xf32>, %kc: tensor<0x32xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_cache' must have rank 3 [P, KV, D], got 'tensor<0x32xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// k_cache must be [P, KV, D] (here the query heads instead of the KV
// heads).
func.func @gqa_k_cache_shape(
    %x: tensor<5x64xf32>, %kc: tensor<3x4x16xf32>, %vc: tensor<3x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_cache' must have shape [P=3, KV=2, D=16], got 'tensor<3x4x16xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<3x4x16xf32>, tensor<3x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>)
  return
}

// -----

// v_cache must hold as many tokens as k_cache.
func.func @gqa_v_cache_shape(
    %x: tensor<5x64xf32>, %kc: tensor<3x2x16xf32>, %vc: tensor<4x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'v_cache' must have shape [P=3, KV=2, D=16], got 'tensor<4x2x16xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<3x2x16xf32>, tensor<4x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>)
  return
}

// -----

// The two caches share one element type.
func.func @gqa_v_cache_element_type(
    %x: tensor<5x64xf32>, %kc: tensor<?x2x16xbf16>, %vc: tensor<?x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'v_cache' must have element type 'bf16' (that of 'k_cache'), got 'f32'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xf32>)
  return
}

// -----

// The weights share one element type, that of q_proj.
func.func @gqa_weight_element_type(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xbf16>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xbf16>, %wo: tensor<64x64xbf16>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_proj' must have element type 'bf16' (that of 'q_proj'), got 'f32'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xbf16>,
         tensor<32x64xf32>, tensor<32x64xbf16>, tensor<64x64xbf16>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// The QK norms are weights too: the element type of q_proj.
func.func @gqa_norm_element_type(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xbf16>,
    %wk: tensor<32x64xbf16>, %wv: tensor<32x64xbf16>, %wo: tensor<64x64xbf16>, %qn: tensor<16xbf16>,
    %kn: tensor<16xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op operand 'k_norm' must have element type 'bf16' (that of 'q_proj'), got 'f32'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xbf16>,
         tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x64xbf16>, tensor<16xbf16>,
         tensor<16xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// rms_norm_eps must be non-negative.
func.func @gqa_negative_rms_norm_eps(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>, %qn: tensor<16xf32>,
    %kn: tensor<16xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op rms_norm_eps must be non-negative}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, rms_norm_eps = -1.0e-6 : f32}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<16xf32>,
         tensor<16xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// rope_theta must be positive.
func.func @gqa_rope_theta(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op rope_theta must be positive}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, rope_theta = 0.0 : f64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// softmax_scale must be positive.
func.func @gqa_softmax_scale(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{'mla.gqa_attention' op softmax_scale must be positive}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, softmax_scale = -0.25 : f32}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// ODS: sliding_window must be a positive integer (checked while parsing,
// at the attribute dictionary).
func.func @gqa_zero_sliding_window(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      // expected-error @+1 {{attribute 'sliding_window' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, sliding_window = 0 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// ODS: num_kv_heads must be a positive integer.
func.func @gqa_zero_num_kv_heads(
    %x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      // expected-error @+1 {{attribute 'num_kv_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
      {num_heads = 4 : i64, num_kv_heads = 0 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// Result types must be compatible with the inferred ones: the extended
// caches have P+S = 3+5 rows, not 5.
func.func @gqa_result_shape(
    %x: tensor<5x64xf32>, %kc: tensor<3x2x16xf32>, %vc: tensor<3x2x16xf32>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+2 {{'mla.gqa_attention' op failed to infer returned types}}
  // expected-error @+1 {{'mla.gqa_attention' op inferred type(s) 'tensor<5x64xf32>', 'tensor<8x2x16xf32>', 'tensor<8x2x16xf32>' are incompatible with return type(s) of operation 'tensor<5x64xf32>', 'tensor<5x2x16xf32>', 'tensor<5x2x16xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<3x2x16xf32>, tensor<3x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return
}

// -----

// Result types must be compatible with the inferred ones: v_out keeps the
// element type of the caches (bf16).
func.func @gqa_result_element_type(
    %x: tensor<1x64xf32>, %kc: tensor<?x2x16xbf16>, %vc: tensor<?x2x16xbf16>, %wq: tensor<64x64xf32>,
    %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+2 {{'mla.gqa_attention' op failed to infer returned types}}
  // expected-error @+1 {{'mla.gqa_attention' op inferred type(s) 'tensor<1x64xf32>', 'tensor<?x2x16xbf16>', 'tensor<?x2x16xbf16>' are incompatible with return type(s) of operation 'tensor<1x64xf32>', 'tensor<?x2x16xbf16>', 'tensor<?x2x16xf32>'}}
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xf32>)
  return
}
