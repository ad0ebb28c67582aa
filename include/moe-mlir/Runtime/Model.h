//===- Model.h - load a model compiled by moe-compile -----------*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_MODEL_H
#define MOE_MLIR_RUNTIME_MODEL_H

#include "moe-mlir/Runtime/Invoke.h"

#include <memory>
#include <string>

namespace moe_rt {

/// A shared library produced by moe-compile, loaded with dlopen.
class CompiledModel {
public:
  static Status load(const std::string &path,
                     std::unique_ptr<CompiledModel> &out);
  ~CompiledModel();
  CompiledModel(const CompiledModel &) = delete;
  CompiledModel &operator=(const CompiledModel &) = delete;

  const ModelInfo &info() const { return info_; }
  Status run(const std::vector<TensorView> &inputs,
             std::vector<Array> &outputs) const {
    return invoke(invoke_, info_, inputs, outputs);
  }

private:
  CompiledModel() = default;
  void *handle_ = nullptr;
  InvokeFn invoke_ = nullptr;
  ModelInfo info_;
};

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_MODEL_H
