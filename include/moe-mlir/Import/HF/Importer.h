//===- Importer.h - Hugging Face checkpoints as moe-mlir modules -*- C++ -*-===//
//
// Part of moe-mlir's Hugging Face frontend. Knows file formats and model
// semantics; knows nothing of lowering.
//
// importModel() reads a checkpoint directory (config.json plus
// model.safetensors or model.safetensors.index.json and its shards) and
// produces a module whose public function @forward follows the language
// model convention of moe-mlir/Runtime/LanguageModel.h: input_ids and the
// per-layer caches in, logits and the grown caches out, every weight an
// argument named after its checkpoint tensor (per-expert tensors stacked
// under a name with '*', see moe-mlir/Runtime/Weights.h). Weights are never
// read: only the safetensors headers, to check every tensor's presence,
// shape and dtype against the config. Decoder layers of the same shape
// share one function, so the module's size does not grow with depth.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_IMPORT_HF_IMPORTER_H
#define MOE_MLIR_IMPORT_HF_IMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace moe_mlir::hf {

struct ImportOptions {
  /// Import from config.json alone (no weights present): weight dtypes come
  /// from the config's torch_dtype. The module records no checkpoint.
  bool shapeOnly = false;
};

/// Imports the checkpoint at `path` (a directory). On failure returns null
/// and sets `error` to one line naming the file and the field or tensor.
mlir::OwningOpRef<mlir::ModuleOp> importModel(mlir::MLIRContext &context,
                                              const std::string &path,
                                              const ImportOptions &options,
                                              std::string &error);

/// True when `path` is a directory: what importModel takes, as opposed to
/// an MLIR file (importModel then says what the directory lacks).
bool isCheckpointDirectory(const std::string &path);

/// Registers the dialects the imported modules use.
void registerImportDialects(mlir::MLIRContext &context);

} // namespace moe_mlir::hf

#endif // MOE_MLIR_IMPORT_HF_IMPORTER_H
