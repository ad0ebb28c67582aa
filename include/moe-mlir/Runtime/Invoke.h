//===- Invoke.h - call a compiled model's entry point -----------*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A compiled model exports `void moe_model_invoke(void **args)`. args[0]
// points to the result descriptors (when the entry has results), then one
// pointer per input descriptor. A descriptor is the strided-buffer record of
// MLIR's C interface: {allocated ptr, aligned ptr, offset, sizes[rank],
// strides[rank]}, all 8 bytes wide; several results lie back to back.
// Inputs are read-only for the model (it never writes into them), so they
// may point into memory-mapped weight files. Results are allocated by the
// model with malloc; `invoke` copies them out and frees them.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_INVOKE_H
#define MOE_MLIR_RUNTIME_INVOKE_H

#include "moe-mlir/Runtime/ModelInfo.h"
#include "moe-mlir/Runtime/Npy.h"

#include <vector>

namespace moe_rt {

using InvokeFn = void (*)(void **);

/// A read-only view of an input tensor (C-order, contiguous).
struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;

  static TensorView of(const Array &array) {
    return TensorView{array.dtype, array.shape, array.data.data()};
  }
};

/// Checks every input against `info` (count, dtype, rank, static sizes),
/// calls `fn`, and copies the results into `outputs` (dtypes as declared).
Status invoke(InvokeFn fn, const ModelInfo &info,
              const std::vector<TensorView> &inputs,
              std::vector<Array> &outputs);

/// Checks one input against its spec; the message names the input.
Status checkInput(const TensorSpec &spec, const TensorView &view);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_INVOKE_H
