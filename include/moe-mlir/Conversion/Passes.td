//===- Passes.td - moe-mlir conversion passes --------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_PASSES_TD
#define MOE_MLIR_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertMoEToLinalg : Pass<"convert-moe-to-linalg"> {
  let summary = "Lower moe ops to linalg, tensor, scf, arith and math";
  let description = [{
    Rewrites every `moe` op into upstream ops on tensors, following the
    semantics stated in the op descriptions exactly:

    - `moe.route` (with logits as input; run
      `moe-materialize-router-logits` first): scoring and selection scores as
      elementwise `linalg.generic`s, group scores and the k-step top-k as
      `linalg.generic` reductions over the experts (strict comparison, so
      ties go to the lower index), the capacity admission as a sequential
      `scf.for` over the assignments in slot-major order.
    - `moe.dispatch`: a sequential bookkeeping pass over the assignments
      (counts, row of every assignment, token of every row; integer work
      only), then a parallel gather of the rows.
    - `moe.expert_ffn` / `moe.shared_expert`: contractions accumulated in
      f32, the activation and biases in f32. A `moe.expert_ffn` whose I and
      H are multiples of 16 is a grouped GEMM: one parallel loop per
      projection over the (expert, column tile) tasks of the experts that
      have rows, each on its expert's dynamic row slice; other shapes loop
      over the experts. Weights stacked by `moe.stack_experts` are read in
      place (the op goes away); a stack with another user is copied into
      one tensor.
      With `bf16-dot-products` and bf16 weights, the projections whose
      reduction size is a multiple of 32 round their input rows to bf16 and
      use AVX512-BF16 dot products (`x86vector.avx512.dot`) accumulated in
      f32; the shared expert's sigmoid gate stays exact.
    - `moe.combine`: a gather-based weighted sum, reduction over the slots in
      increasing order, in f32: no atomics, no scatter, the same bits for any
      tiling or thread count.
    - the expert-parallel ops (`moe.ep_dispatch`, `moe.ep_return`,
      `moe.ep_home`, `moe.ep_all_gather`, from `moe-expert-parallel`): calls
      of the runtime's exchange hooks (`moe_ep_*`, declared in the module,
      defined by the model ABI) on identity-layout buffers; the replica
      choice and the home-token range are computed in the compiled code.
  }];
  let options = [
    Option<"bf16DotProducts", "bf16-dot-products", "bool", /*default=*/"false",
           "bf16 weights: round the activations to bf16 and use AVX512-BF16 "
           "dot products with f32 accumulation (targets with avx512bf16 only)">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::func::FuncDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect",
  ];
}

def ConvertMemRefCopyToLinalg : Pass<"convert-memref-copy-to-linalg"> {
  let summary = "Rewrite memref.copy as linalg.copy";
  let description = [{
    `memref.copy` between buffers with non-identity layouts (strided slices
    after bufferization) lowers to a call into MLIR's C runner utilities
    (`memrefCopy`), a library a compiled model must not depend on. As
    `linalg.copy` the copy becomes ordinary loops (and, later, vector code)
    in the model itself.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def ConvertMLAToLinalg : Pass<"convert-mla-to-linalg"> {
  let summary = "Lower mla.attention and mla.gqa_attention to linalg, tensor, arith and math";
  let description = [{
    Rewrites every `mla.attention` into upstream ops on tensors, following
    the op description in its naive form (k_nope and v expanded from every
    cached and new `c_kv`); P and S may be dynamic:

    - projections: the vectorized x·Wᵀ kernel (all heads at once; the
      naive form expands every cached and new latent through kv_b_proj this
      way), accumulated in f32; the per-head pieces (q_nope, the two
      components of the rope pairs of q_rope, k_nope, v) are read through
      `expand_shape`/`extract_slice` views of the head-major results, and
      the absorbed form's per-head products (q_nope · W_kb, o_lat · W_vbᵀ)
      are register-tiled vector loops; `linalg.generic` contractions where
      a size is dynamic;
    - RMSNorm (q LoRA, `kv_a_norm`) in f32;
    - RoPE: the D_r/2 frequencies (plain or YaRN) are evaluated in f64 by
      the pass and stored as a dense f64 constant; at run time the angle
      `(P + s) · f_i`, its cos and sin and the YaRN factor on them are
      evaluated in f64 and rounded once to f32; the rotation is f32;
    - the caches: the P old rows, then the S new rows rounded to the cache
      element type (`tensor.insert_slice`); the attention reads the rounded
      rows;
    - scores, causal mask (key j visible to token s when j <= P + s),
      max-subtracted softmax and the weighted sum of v in f32, the scale
      rounded to f32; the weighted sum is divided by the softmax
      denominator; the output projection accumulates in f32 and is rounded
      once to the element type of `hidden`. This attention core is one
      vector kernel (AttentionKernel.cpp): parallel tasks of up to 16
      (token, head) rows that share their key and value rows, each row
      computing scores only for the keys it can see, dot products in
      16-lane fused multiply-adds reduced by one fixed tree, `exp` in
      vector arithmetic (within 1 ulp of the correctly rounded value;
      results below e^-87 flush to 0), and every sum in an order fixed by
      the shapes alone, so a row has the same bits whatever its tile, task
      or the thread count.

    With `bf16-dot-products` and bf16 weights, the projections that go
    through the vectorized x·Wᵀ kernel (q_a_proj, kv_a_proj; q/k/v/o of
    `mla.gqa_attention`) round their input to bf16 and use AVX512-BF16 dot
    products when the reduction size is a multiple of 32.

    and every `mla.gqa_attention`: projections through the vectorized x·Wᵀ
    kernel, per-head RMSNorm (Qwen3's q/k norm), RoPE with Hugging Face's
    f32 tables (f32 inverse frequencies and angle, cos and sin correctly
    rounded to f32), the caches extended as for `mla.attention`, query head
    h attending with KV head h / (N / KV), causal with an optional sliding
    window; the attention core (scores, masked softmax, weighted sum of
    values) is shared with `mla.attention`.
  }];
  let options = [
    Option<"bf16DotProducts", "bf16-dot-products", "bool", /*default=*/"false",
           "bf16 weights: round the activations to bf16 and use AVX512-BF16 "
           "dot products with f32 accumulation (targets with avx512bf16 only)">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect",
  ];
}

def ConvertLinalgMatmulToKernel
    : Pass<"convert-linalg-matmul-to-kernel", "::mlir::func::FuncOp"> {
  let summary = "Lower x·Wᵀ matmuls (nn.Linear layout) to the vectorized kernel";
  let description = [{
    Rewrites every `linalg.matmul` on tensors whose indexing maps read B
    transposed (`(m, k)`, `(n, k)` -> `(m, n)`: an activation times a weight
    stored [out, in], as checkpoints store nn.Linear weights) and whose init
    is a zero `linalg.fill`, into the register-tiled, vectorized contraction
    that the moe and mla lowerings use for their projections (f32
    accumulation, operands of any float type widened to f32, the k-sum in a
    fixed order so the result is the same bits for every thread count). The
    result is rounded once to the init's element type.

    Other matmuls are left alone (and become loops later in the pipeline).
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def OutlineParallelLoops : Pass<"moe-outline-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "Run scf.parallel loops on the model's thread pool";
  let description = [{
    Outlines the body of every outermost one-dimensional `scf.parallel` (on
    buffers, after bufferization) into a task function
    `void task(void *closure, int64_t begin, int64_t end)` that runs the
    iterations [begin, end) in order, packs the values the body uses into a
    closure on the stack, and replaces the loop with a call to
    `moe_parallel_dispatch(task, closure, n)`.

    The model defines `moe_parallel_dispatch` (see `addModelAbi`): it calls
    the thread pool that the runtime installed with
    `moe_model_set_parallel_for`, or, without one, runs all iterations on
    the calling thread. The iterations of an `scf.parallel` write disjoint
    data, so the results are the same bits whatever the number of threads.
    This keeps threading out of the model's dependencies: the compiled
    library needs no OpenMP or MLIR runtime, only a pool that the host may
    provide.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect",
  ];
}

#endif // MOE_MLIR_CONVERSION_PASSES_TD
