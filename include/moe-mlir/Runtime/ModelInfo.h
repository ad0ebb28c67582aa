//===- ModelInfo.h - what a compiled model takes and returns ----*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A compiled model describes its entry point in a small text record,
// returned by the exported C function `moe_model_metadata()`:
//
//   moe-model-abi 1
//   entry <function name>
//   weights <path>                            (optional, the rest of the line)
//   input <name> <dtype> <rank> <dim>...      (one line per argument)
//   output <name> <dtype> <rank> <dim>...     (one line per result)
//   expert-parallel <N>                       (optional, see below)
//   slots <input name> <count> <expert>...    (optional, see below)
//
// dtype is one of f32 f16 bf16 i32 i64 u8 bool; a dynamic dimension is -1.
// Names contain no whitespace. `weights` names the checkpoint the model was
// compiled from, where a runner finds the inputs named after its tensors:
// a safetensors file, index or directory, or an .onnx model file whose
// graph initializers became inputs of the same names (see Weights.h). The
// same record describes a model compiled ahead of time (moe-compile) and
// one JIT-compiled by moe-run.
//
// A model sharded for expert parallelism over N ranks (see
// ExpertParallel.h) says `expert-parallel N`, and each of its stacked
// expert-weight inputs of shape [S, ...] (S local expert slots per rank)
// has a `slots` line after its `input` line listing N * S expert ids:
// rank r binds the experts ids[r * S .. r * S + S) of that weight, in that
// order; -1 marks an unused slot (bound to zeros, never routed to).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_MODELINFO_H
#define MOE_MLIR_RUNTIME_MODELINFO_H

#include "moe-mlir/Runtime/Npy.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe_rt {

/// The ABI version written into and required from every model.
constexpr int kModelAbiVersion = 1;

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape; // -1: dynamic
  /// Expert-parallel models: the expert of each global slot (N * S ids,
  /// rank-major, -1 unused) of a stacked expert weight [S, ...]; empty for
  /// every other input.
  std::vector<int32_t> slotExperts = {};
};

struct ModelInfo {
  std::string entry;
  std::string weightsPath; // empty: none recorded
  /// The number of ranks the model was sharded for (1: not sharded).
  int expertParallel = 1;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;

  /// The index of the input named `name`, or -1.
  int findInput(const std::string &name) const;
};

/// The metadata record of `info`.
std::string serializeModelInfo(const ModelInfo &info);

/// Parses a metadata record; `origin` names it in error messages.
Status parseModelInfo(const std::string &text, const std::string &origin,
                      ModelInfo &out);

/// Parses a dtype name ("f32", "bf16", ...).
bool parseDType(const std::string &name, DType &out);

/// "[2, ?, 16]"
std::string shapeToString(const std::vector<int64_t> &shape);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_MODELINFO_H
