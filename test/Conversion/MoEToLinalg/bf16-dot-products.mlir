// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg="bf16-dot-products=1" | FileCheck %s
// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg | FileCheck %s --check-prefix=EXACT
// bf16-dot-products: bf16 weights with a reduction size that is a multiple of
// 32 use AVX512-BF16 dot products on bf16-rounded rows; without the option
// (and for f32 weights, or a reduction size of 16) the rows are widened to
// f32 and multiplied with FMAs.

// Gate and up (k = H = 64) and down (k = I = 32): three dot-product kernels,
// each reading 32 bf16 values per step.
// CHECK-LABEL: func.func @experts_bf16
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK: scf.for {{.*}} step %c32
// CHECK: x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>
// CHECK-NOT: vector.fma
// EXACT-LABEL: func.func @experts_bf16
// EXACT-NOT: x86vector
// EXACT: vector.fma
// EXACT-NOT: x86vector
func.func @experts_bf16(%rows: tensor<?x64xf32>, %counts: tensor<4xi32>, %w1: tensor<4x32x64xbf16>, %w2: tensor<4x64x32xbf16>, %w3: tensor<4x32x64xbf16>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate : (tensor<?x64xf32>, tensor<4xi32>, tensor<4x32x64xbf16>, tensor<4x64x32xbf16>, tensor<4x32x64xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// f32 weights never use the bf16 dot products.
// CHECK-LABEL: func.func @experts_f32
// CHECK-NOT: x86vector
// CHECK: vector.fma
// CHECK-NOT: x86vector
func.func @experts_f32(%rows: tensor<?x64xf32>, %counts: tensor<4xi32>, %w1: tensor<4x32x64xf32>, %w2: tensor<4x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = gelu : (tensor<?x64xf32>, tensor<4xi32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A reduction size of 16 (not a multiple of 32) keeps the f32 FMA kernel;
// the down projection (k = 32) uses the dot products. The shared expert's
// sigmoid gate (a [1, 16] weight) is exact either way.
// CHECK-LABEL: func.func @shared_k16
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK: x86vector.avx512.dot
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK-NOT: x86vector
// CHECK: return
func.func @shared_k16(%x: tensor<?x16xf32>, %s1: tensor<32x16xbf16>, %s2: tensor<16x32xbf16>, %s3: tensor<32x16xbf16>, %sg: tensor<1x16xbf16>) -> tensor<?x16xf32> {
  %sh = moe.shared_expert %x fc1(%s1) fc3(%s3) fc2(%s2) gate(%sg) act = silu gating = separate : (tensor<?x16xf32>, tensor<32x16xbf16>, tensor<16x32xbf16>, tensor<32x16xbf16>, tensor<1x16xbf16>) -> tensor<?x16xf32>
  return %sh : tensor<?x16xf32>
}
