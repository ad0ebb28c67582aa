//===- Weights.h - bind a model's inputs to checkpoint tensors --*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A model's weight inputs are named after checkpoint tensors and found by
// name in one or more checkpoints, searched in the order they were added:
// safetensors checkpoints (single files, sharded indexes or directories,
// see SafeTensors.h) and ONNX model files (".onnx": the initializers of the
// top-level graph, which a model compiled from that file takes as inputs
// named after them, see OnnxFile.h). Two kinds of names:
//
//  - a plain tensor name ("model.embed_tokens.weight", "fc1.weight"): that
//    tensor or initializer;
//  - a stacked name with one '*' ("model.layers.3.mlp.experts.*.w1.weight")
//    for an input of shape [E, ...]: the tensors with '*' replaced by 0, 1,
//    ..., E-1, each of shape [...], stacked along a new leading dimension.
//    This is how a checkpoint's per-expert nn.Linear weights become the
//    [E, out, in] operands of moe.expert_ffn.
//
// Tensors are passed without a copy when the checkpoint already holds them
// as the model needs them: same dtype, aligned to the element size, and for
// a stack, the E tensors back to back in order in one file (an ONNX model's
// external data file, written by onnx.save(..., all_tensors_to_one_file),
// usually holds them so). Otherwise (another float type, an unaligned
// tensor such as raw_data inside a protobuf usually is, experts stored
// apart or out of order) the weights are gathered/converted into aligned
// memory owned by the WeightSet, once. Messages name the checkpoint file
// and the tensor.
//
// An expert-parallel model (see ExpertParallel.h) takes, on each rank, only
// that rank's expert slots of each stacked expert weight: an input [S, ...]
// whose spec lists the experts of every rank's slots (TensorSpec::
// slotExperts). bindSlots binds it for a list of S experts: for a stacked
// name the tensors with '*' replaced by each listed expert id, for a plain
// name whose tensor is [E, ...] (an ONNX initializer holding all experts)
// the listed rows of it; expert -1 (an unused slot) gives zeros. bind()
// binds such an input for the calling thread's current rank.
//
// A WeightSet is not thread-safe; a spec bound twice (same name, dtype,
// shape and experts) gives the same view, so ranks that share a WeightSet
// share their replicated weights.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_WEIGHTS_H
#define MOE_MLIR_RUNTIME_WEIGHTS_H

#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/OnnxFile.h"
#include "moe-mlir/Runtime/SafeTensors.h"

#include <map>
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
  /// Opens a checkpoint and adds it to the places searched, after the ones
  /// already added: a file whose name ends in ".onnx" as an ONNX model (see
  /// OnnxFile), anything else as a safetensors checkpoint (see
  /// openSafeTensorsCheckpoint).
  Status addCheckpoint(const std::string &path);
  bool empty() const { return sources_.empty(); }

  /// True when some checkpoint holds the tensor (or, for a stacked name,
  /// its first element) named by `spec`. ONNX initializers whose type has
  /// no runtime dtype (STRING, ...) count too; bind() then explains.
  bool provides(const TensorSpec &spec) const;

  /// Binds the input `spec` (a plain or stacked name, see above): `view`
  /// receives the tensor, checked against the spec. Messages name the
  /// checkpoint file and the tensor. A spec with slotExperts is bound for
  /// the calling thread's current ExpertParallelRank (an error without
  /// one).
  Status bind(const TensorSpec &spec, TensorView &view);

  /// Binds the expert-slot input `spec` ([S, ...]) with the S `experts`
  /// (-1: zeros), see above.
  Status bindSlots(const TensorSpec &spec, const std::vector<int32_t> &experts,
                   TensorView &view);

  /// The experts of `rank`'s slots of `spec` (its slotExperts, rank-major);
  /// empty when the spec has none or `rank` is out of range.
  static std::vector<int32_t> slotsOfRank(const TensorSpec &spec, int rank);

  /// Bytes copied so far because tensors could not be used in place.
  uint64_t copiedBytes() const { return copiedBytes_; }

private:
  /// One checkpoint: a safetensors checkpoint or an ONNX model.
  struct Source {
    std::unique_ptr<SafeTensorsIndex> safetensors;
    std::unique_ptr<OnnxFile> onnx;
  };

  /// A tensor found in a checkpoint, in terms common to both formats.
  struct Found {
    const std::string *file = nullptr; // the file that holds it
    const char *kind = "tensor";       // "tensor" or "initializer"
    const std::vector<int64_t> *shape = nullptr;
    int64_t numElements = 0;
    const void *data = nullptr;
    /// The mapping or buffer `data` lies in: tensors back to back in one
    /// region may be viewed as one.
    const void *region = nullptr;
    bool hasDType = false; // false: no runtime DType (F64, INT8, STRING...)
    DType dtype = DType::F32;
    std::string dtypeName; // the file's name of the type ("F64", "DOUBLE")
    bool aligned = false;
  };

  /// The first tensor named `name` over the sources, in order.
  bool find(const std::string &name, Found &out) const;
  /// The source's path when there is one source, else a description.
  std::string where() const;
  Status bindPlain(const TensorSpec &spec, TensorView &view);
  Status bindStacked(const TensorSpec &spec, TensorView &view);
  Status bindSlotsUncached(const TensorSpec &spec,
                           const std::vector<int32_t> &experts,
                           TensorView &view);

  std::vector<Source> sources_;
  std::vector<std::unique_ptr<Array>> owned_;
  /// Views bound so far, by spec (and experts).
  std::map<std::string, TensorView> bound_;
  uint64_t copiedBytes_ = 0;
};

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_WEIGHTS_H
