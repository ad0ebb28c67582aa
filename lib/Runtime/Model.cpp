//===- Model.cpp - load a model compiled by moe-compile -------------------===//
//
// Part of moe-mlir's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Model.h"
#include "moe-mlir/Runtime/ExpertParallel.h"
#include "moe-mlir/Runtime/ThreadPool.h"

#include <dlfcn.h>

namespace moe_rt {

Status CompiledModel::load(const std::string &path,
                           std::unique_ptr<CompiledModel> &out) {
  // dlopen searches the library path for names without a slash.
  std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  void *handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    return Status::error(path + ": cannot load the compiled model: " +
                         (why ? why : "unknown error"));
  }
  std::unique_ptr<CompiledModel> model(new CompiledModel());
  model->handle_ = handle;
  using MetadataFn = const char *(*)();
  auto metadata =
      reinterpret_cast<MetadataFn>(dlsym(handle, "moe_model_metadata"));
  model->invoke_ = reinterpret_cast<InvokeFn>(dlsym(handle, "moe_model_invoke"));
  if (!metadata || !model->invoke_)
    return Status::error(path + ": not a moe-mlir model (no moe_model_metadata "
                                "/ moe_model_invoke)");
  if (Status st = parseModelInfo(metadata(), path, model->info_); !st)
    return st;
  // Models with parallel loops run them on the runtime's pool.
  using SetPoolFn = void (*)(void *);
  if (auto setPool = reinterpret_cast<SetPoolFn>(
          dlsym(handle, "moe_model_set_parallel_for")))
    setPool(reinterpret_cast<void *>(&moe_rt_parallel_for));
  // Expert-parallel models move tokens through the runtime's hooks.
  using SetHooksFn = void (*)(const MoeEpHooks *);
  if (auto setHooks = reinterpret_cast<SetHooksFn>(
          dlsym(handle, "moe_model_set_expert_parallel")))
    setHooks(expertParallelHooks());
  out = std::move(model);
  return Status::success();
}

CompiledModel::~CompiledModel() {
  if (handle_)
    dlclose(handle_);
}

} // namespace moe_rt
