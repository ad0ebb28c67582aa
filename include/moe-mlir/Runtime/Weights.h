//===- Weights.h - bind a model's inputs to checkpoint tensors --*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A model's weight inputs are named after checkpoint tensors and found by
// name in one or more safetensors checkpoints (single files, sharded
// indexes or directories). Two kinds of names:
//
//  - a plain tensor name ("model.embed_tokens.weight"): that tensor;
//  - a stacked name with one '*' ("model.layers.3.mlp.experts.*.w1.weight")
//    for an input of shape [E, ...]: the tensors with '*' replaced by 0, 1,
//    ..., E-1, each of shape [...], stacked along a new leading dimension.
//    This is how a checkpoint's per-expert nn.Linear weights become the
//    [E, out, in] operands of moe.expert_ffn.
//
// Tensors are passed without a copy when the checkpoint already holds them
// as the model needs them: same dtype, aligned, and for a stack, the E
// tensors back to back in order in one file. Otherwise (another float type,
// an unaligned tensor, experts stored apart or out of order) the weights are
// gathered/converted into memory owned by the WeightSet, once.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_WEIGHTS_H
#define MOE_MLIR_RUNTIME_WEIGHTS_H

#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/SafeTensors.h"

#include <memory>
#include <string>
#include <vector>

namespace moe_rt {

/// `array` converted to `to` when both are float types (f32, f16, bf16;
/// bf16 and f16 rounded to nearest even); unchanged otherwise.
Array convertFloatArray(const Array &array, DType to);

/// Converts `count` elements of float type `from` at `src` to float type
/// `to` at `dst` (the same rounding).
void convertFloats(const void *src, DType from, void *dst, DType to,
                   int64_t count);

class WeightSet {
public:
  /// Opens a checkpoint (see openSafeTensorsCheckpoint) and adds it to the
  /// places searched, after the ones already added.
  Status addCheckpoint(const std::string &path);
  bool empty() const { return checkpoints_.empty(); }

  /// True when some checkpoint holds the tensor (or, for a stacked name,
  /// its first element) named by `spec`.
  bool provides(const TensorSpec &spec) const;

  /// Binds the input `spec` (a plain or stacked name, see above): `view`
  /// receives the tensor, checked against the spec. Messages name the
  /// checkpoint file and the tensor.
  Status bind(const TensorSpec &spec, TensorView &view);

  /// Bytes copied so far because tensors could not be used in place.
  uint64_t copiedBytes() const { return copiedBytes_; }

private:
  const TensorInfo *find(const std::string &name,
                         const SafeTensorsFile **file) const;
  Status bindPlain(const TensorSpec &spec, TensorView &view);
  Status bindStacked(const TensorSpec &spec, TensorView &view);

  std::vector<std::unique_ptr<SafeTensorsIndex>> checkpoints_;
  std::vector<std::unique_ptr<Array>> owned_;
  uint64_t copiedBytes_ = 0;
};

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_WEIGHTS_H
