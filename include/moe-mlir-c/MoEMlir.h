/*===-- moe-mlir-c/MoEMlir.h - the C API of moe-mlir --------------*- C -*-===*\
|*                                                                            *|
|* Part of moe-mlir.                                                          *|
|*                                                                            *|
|* Everything the tools do, as C functions, in the style of MLIR's own C API: *|
|* opaque handles (a struct holding one pointer; null means none), functions *|
|* that can fail return a MoeMlirStatus carrying a one-line message (the     *|
|* same line moe-compile / moe-run print, without the tool's name), results  *|
|* through out-parameters. The Python module `moe_mlir` is a thin layer over *|
|* this header (python-bindings/); see docs/python.md.                       *|
|*                                                                            *|
|*   MoeMlirContext        an MLIR context with every dialect moe-mlir uses  *|
|*   MoeMlirModule         an MLIR module: imported (Hugging Face checkpoint,*|
|*                         ONNX file) or parsed; pass pipelines run on it    *|
|*   MoeMlirCompiledModel  a shared library exporting the model ABI         *|
|*                         (docs/running.md), loaded; runs on tensors, binds *|
|*                         weights from checkpoints by name                  *|
|*   MoeMlirLanguageModel  prefill / decode / greedy generation with caches *|
|*   MoeMlirTensor         a result: dense, C order, owned by the handle     *|
|*                                                                            *|
|* Ownership: every handle a function returns is the caller's, released with *|
|* the matching ...Destroy. A module belongs to its context, which must      *|
|* outlive it; compiled models, language models and tensors own what they    *|
|* need (a language model keeps its compiled model alive).                   *|
|*                                                                            *|
|* Threads: operations on the modules of one context are serialized (each   *|
|* takes the context's lock); runs of compiled models are serialized         *|
|* process-wide (they share the runtime's thread pool, which moe-run's       *|
|* --num-threads / moeMlirSetNumThreads sizes).                              *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef MOE_MLIR_C_MOEMLIR_H
#define MOE_MLIR_C_MOEMLIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MOE_MLIR_CAPI_EXPORTED __attribute__((visibility("default")))
#else
#define MOE_MLIR_CAPI_EXPORTED
#endif

#define MOE_MLIR_DEFINE_C_API_STRUCT(name)                                     \
  typedef struct name {                                                        \
    void *ptr;                                                                 \
  } name

MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirStatus);
MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirContext);
MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirModule);
MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirCompiledModel);
MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirLanguageModel);
MOE_MLIR_DEFINE_C_API_STRUCT(MoeMlirTensor);

#undef MOE_MLIR_DEFINE_C_API_STRUCT

/*===----------------------------------------------------------------------===*
 * Status
 *===----------------------------------------------------------------------===*/

/// What kind of failure a status reports.
typedef enum MoeMlirStatusCode {
  MoeMlirStatusSuccess = 0,
  /// A failure the tools report: a missing or malformed file, an import,
  /// parse, pipeline or compile error, a weight that cannot be bound.
  MoeMlirStatusError = 1,
  /// The caller's mistake: an input of the wrong shape or dtype, an unknown
  /// input name, an option out of range.
  MoeMlirStatusInvalidArgument = 2,
  /// A request for something the project does not do yet (target "cuda",
  /// expert parallelism > 1).
  MoeMlirStatusNotImplemented = 3,
} MoeMlirStatusCode;

/// Null is success. A failed status must be destroyed.
static inline bool moeMlirStatusIsSuccess(MoeMlirStatus status) {
  return status.ptr == NULL;
}
MOE_MLIR_CAPI_EXPORTED MoeMlirStatusCode
moeMlirStatusGetCode(MoeMlirStatus status);
/// The one-line message ("" for success); valid until the status is
/// destroyed.
MOE_MLIR_CAPI_EXPORTED const char *
moeMlirStatusGetMessage(MoeMlirStatus status);
MOE_MLIR_CAPI_EXPORTED void moeMlirStatusDestroy(MoeMlirStatus status);

/*===----------------------------------------------------------------------===*
 * Element types, tensor descriptions
 *===----------------------------------------------------------------------===*/

/// Element types of a model's inputs and outputs (the runtime's DType).
typedef enum MoeMlirDType {
  MoeMlirDTypeF32 = 0,
  MoeMlirDTypeF16 = 1,
  MoeMlirDTypeBF16 = 2,
  MoeMlirDTypeI32 = 3,
  MoeMlirDTypeI64 = 4,
  MoeMlirDTypeU8 = 5,
  MoeMlirDTypeBool = 6, /* one byte, 0 or 1 */
} MoeMlirDType;

/// Bytes per element.
MOE_MLIR_CAPI_EXPORTED size_t moeMlirDTypeGetSize(MoeMlirDType dtype);
/// "f32", "f16", "bf16", "i32", "i64", "u8", "bool" (the metadata's names).
MOE_MLIR_CAPI_EXPORTED const char *moeMlirDTypeGetName(MoeMlirDType dtype);

/// A model input or output as the model declares it. `shape[d]` is -1 for
/// a dimension chosen at run time. The pointers live as long as the
/// compiled model.
typedef struct MoeMlirTensorSpec {
  const char *name;
  MoeMlirDType dtype;
  size_t rank;
  const int64_t *shape;
} MoeMlirTensorSpec;

/// A caller's tensor: dense, C order (row-major), little-endian. Read-only
/// for moe-mlir: models never write into their inputs, and a view is
/// passed to the model without a copy.
typedef struct MoeMlirTensorView {
  MoeMlirDType dtype;
  size_t rank;
  const int64_t *shape;
  const void *data;
} MoeMlirTensorView;

/*===----------------------------------------------------------------------===*
 * Tensors (results)
 *===----------------------------------------------------------------------===*/

MOE_MLIR_CAPI_EXPORTED void moeMlirTensorDestroy(MoeMlirTensor tensor);
MOE_MLIR_CAPI_EXPORTED MoeMlirDType moeMlirTensorGetDType(MoeMlirTensor tensor);
MOE_MLIR_CAPI_EXPORTED size_t moeMlirTensorGetRank(MoeMlirTensor tensor);
MOE_MLIR_CAPI_EXPORTED const int64_t *
moeMlirTensorGetShape(MoeMlirTensor tensor);
/// The elements, dense and C order; valid until the tensor is destroyed.
MOE_MLIR_CAPI_EXPORTED void *moeMlirTensorGetData(MoeMlirTensor tensor);
MOE_MLIR_CAPI_EXPORTED size_t moeMlirTensorGetNumBytes(MoeMlirTensor tensor);

/// A copy of `view` as a new tensor of type `dtype`: the same type, or
/// float to float (f32, f16, bf16; rounded to nearest even, as moe-run
/// reads .npy files). Other conversions are an invalid argument.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus moeMlirTensorCreateConverted(
    const MoeMlirTensorView *view, MoeMlirDType dtype, MoeMlirTensor *out);

/// Converts a float tensor to another float type in place (bf16 results
/// to f32, as moe-run writes them).
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirTensorConvert(MoeMlirTensor tensor, MoeMlirDType dtype);

/*===----------------------------------------------------------------------===*
 * Contexts and modules
 *===----------------------------------------------------------------------===*/

/// A context with every upstream dialect, extension and translation
/// registered, and moe-mlir's dialects; the first call also registers every
/// pass and pipeline (those of moe-opt) and the host target.
MOE_MLIR_CAPI_EXPORTED MoeMlirContext moeMlirContextCreate(void);
MOE_MLIR_CAPI_EXPORTED void moeMlirContextDestroy(MoeMlirContext context);

/// What a path holds, decided as moe-compile and moe-run decide it.
typedef enum MoeMlirModelKind {
  MoeMlirModelKindMLIR = 0,          /* anything else: parsed as MLIR */
  MoeMlirModelKindHFCheckpoint = 1,  /* a directory */
  MoeMlirModelKindONNX = 2,          /* a file named *.onnx */
  MoeMlirModelKindSharedLibrary = 3, /* a file named *.so */
} MoeMlirModelKind;
MOE_MLIR_CAPI_EXPORTED MoeMlirModelKind moeMlirGetModelKind(const char *path);

/// Imports a Hugging Face checkpoint directory (moe-import DIR).
/// `shapeOnly`: from config.json alone, recording no checkpoint.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirImportHuggingFace(MoeMlirContext context, const char *directory,
                         bool shapeOnly, MoeMlirModule *out);

/// Imports an ONNX file (moe-import FILE.onnx); `raiseMoE` false is
/// moe-import's --no-raise.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirImportOnnx(MoeMlirContext context, const char *path, bool raiseMoE,
                  MoeMlirModule *out);

/// Parses (and verifies) MLIR text; `sourceName` names it in messages.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirModuleParse(MoeMlirContext context, const char *text, size_t length,
                   const char *sourceName, MoeMlirModule *out);

/// Parses (and verifies) an MLIR file.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus moeMlirModuleParseFile(
    MoeMlirContext context, const char *path, MoeMlirModule *out);

MOE_MLIR_CAPI_EXPORTED void moeMlirModuleDestroy(MoeMlirModule module);

/// A deep copy, in the same context.
MOE_MLIR_CAPI_EXPORTED MoeMlirModule moeMlirModuleClone(MoeMlirModule module);

/// Receives text in one or more pieces.
typedef void (*MoeMlirStringCallback)(const char *data, size_t length,
                                      void *userData);

/// Prints the module as moe-import / moe-opt write it.
MOE_MLIR_CAPI_EXPORTED void moeMlirModulePrint(MoeMlirModule module,
                                               MoeMlirStringCallback callback,
                                               void *userData);

/// The checkpoint an importer recorded (the `moe.checkpoint` attribute: the
/// directory or .onnx file the weights are bound from), or NULL. Valid
/// while the module lives.
MOE_MLIR_CAPI_EXPORTED const char *
moeMlirModuleGetCheckpoint(MoeMlirModule module);

/// Verifies the module.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus moeMlirModuleVerify(MoeMlirModule module);

/// Runs a textual pass pipeline on the module in place, as moe-opt would:
/// "builtin.module(canonicalize,cse)", or the same without the anchor
/// ("canonicalize,cse", "moe-cpu-pipeline"). Every registered pass and
/// pipeline is available.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirModuleRunPipeline(MoeMlirModule module, const char *pipeline);

/*===----------------------------------------------------------------------===*
 * Compiling
 *===----------------------------------------------------------------------===*/

typedef struct MoeMlirCompileOptions {
  /// "cpu" (the only target implemented; "cuda" is reported as not
  /// implemented yet).
  const char *target;
  /// Expert parallelism: the number of ranks the MoE layers' experts are
  /// sharded over (moe-compile --ep N, contiguous placement). A sharded
  /// model runs as N ranks: save it and run it with moe-run --ep N; run here
  /// it reports that it needs an expert-parallel group.
  int64_t expertParallelism;
  /// The CPU to generate code for: "native" (the host) or an LLVM CPU name
  /// such as "x86-64-v3" (moe-compile --cpu).
  const char *cpu;
  /// The function to compile; NULL or "" for the only public function, else
  /// @main (moe-compile --entry).
  const char *entry;
  /// bf16 weights: "auto" (AVX512-BF16 dot products on bf16-rounded
  /// activations where the CPU has avx512bf16), "on" or "off" (exact f32
  /// products); NULL means "auto" (moe-compile --bf16-dot).
  const char *bf16Dot;
  /// The optimization pipeline (moe-optimize): NULL or "" for the default,
  /// "off" to skip it (moe-compile --optimize=false), or its options as
  /// moe-opt takes them, separated by spaces or commas, e.g.
  /// "fuse-shared-expert=false weight-absorption=naive".
  const char *optimize;
} MoeMlirCompileOptions;

/// target "cpu", expertParallelism 1, cpu "native", entry NULL, bf16Dot
/// "auto", optimize NULL.
MOE_MLIR_CAPI_EXPORTED void
moeMlirCompileOptionsInit(MoeMlirCompileOptions *options);

/// Compiles the module ahead of time, as moe-compile does (the module
/// itself is left unchanged), and loads the shared library. `options` may
/// be NULL for the defaults.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirModuleCompile(MoeMlirModule module, const MoeMlirCompileOptions *options,
                     MoeMlirCompiledModel *out);

/*===----------------------------------------------------------------------===*
 * Compiled models
 *===----------------------------------------------------------------------===*/

/// Loads a shared library written by moe-compile or
/// moeMlirCompiledModelSave.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirCompiledModelLoad(const char *path, MoeMlirCompiledModel *out);

MOE_MLIR_CAPI_EXPORTED void
moeMlirCompiledModelDestroy(MoeMlirCompiledModel model);

/// Writes the shared library to `path` (replaced atomically): moe-run runs
/// it, and it binds its weights from the checkpoint it records.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirCompiledModelSave(MoeMlirCompiledModel model, const char *path);

/// Writes the C header moe-compile --header writes for it.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirCompiledModelWriteHeader(MoeMlirCompiledModel model, const char *path);

/// The entry point's name (without '@').
MOE_MLIR_CAPI_EXPORTED const char *
moeMlirCompiledModelGetEntry(MoeMlirCompiledModel model);
/// The checkpoint the model records (its metadata's `weights` line), or
/// NULL.
MOE_MLIR_CAPI_EXPORTED const char *
moeMlirCompiledModelGetCheckpoint(MoeMlirCompiledModel model);
/// The metadata record (docs/running.md, "The model ABI").
MOE_MLIR_CAPI_EXPORTED const char *
moeMlirCompiledModelGetMetadata(MoeMlirCompiledModel model);

MOE_MLIR_CAPI_EXPORTED size_t
moeMlirCompiledModelGetNumInputs(MoeMlirCompiledModel model);
MOE_MLIR_CAPI_EXPORTED size_t
moeMlirCompiledModelGetNumOutputs(MoeMlirCompiledModel model);
/// `index` must be below the number of inputs (outputs).
MOE_MLIR_CAPI_EXPORTED MoeMlirTensorSpec
moeMlirCompiledModelGetInput(MoeMlirCompiledModel model, size_t index);
MOE_MLIR_CAPI_EXPORTED MoeMlirTensorSpec
moeMlirCompiledModelGetOutput(MoeMlirCompiledModel model, size_t index);
/// The index of the input named `name`, or -1.
MOE_MLIR_CAPI_EXPORTED ptrdiff_t
moeMlirCompiledModelFindInput(MoeMlirCompiledModel model, const char *name);

/// Adds a checkpoint (safetensors file, sharded index or directory, or
/// .onnx file) to those inputs are bound from, after the ones added before
/// (moe-run --weights). Once one is added, the checkpoint the model records
/// is no longer searched.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirCompiledModelAddWeights(MoeMlirCompiledModel model, const char *path);

/// True when the weights (those added, else the recorded checkpoint) hold
/// a tensor for input `index`, so that a run may leave it out.
MOE_MLIR_CAPI_EXPORTED bool
moeMlirCompiledModelHasWeight(MoeMlirCompiledModel model, size_t index);

/// Runs the model once. `inputs` has one entry per model input, in order;
/// a NULL entry is bound from the weights by name (memory-mapped, once).
/// Inputs are checked against the model (dtype, rank, static sizes);
/// `outputs` receives one tensor per model output, in order, each the
/// caller's to destroy. Nothing is written to `outputs` on failure.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirCompiledModelRun(MoeMlirCompiledModel model, size_t numInputs,
                        const MoeMlirTensorView *const *inputs,
                        MoeMlirTensor *outputs);

/*===----------------------------------------------------------------------===*
 * Language models
 *===----------------------------------------------------------------------===*/

/// A session over a compiled language model (the convention of
/// moe-mlir/Runtime/LanguageModel.h: input_ids and caches in, logits and
/// grown caches out), its weights bound; it keeps its caches between calls.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus moeMlirLanguageModelCreate(
    MoeMlirCompiledModel model, MoeMlirLanguageModel *out);
MOE_MLIR_CAPI_EXPORTED void
moeMlirLanguageModelDestroy(MoeMlirLanguageModel session);

MOE_MLIR_CAPI_EXPORTED int64_t
moeMlirLanguageModelGetVocabSize(MoeMlirLanguageModel session);
/// Tokens in the caches: the position the next token takes.
MOE_MLIR_CAPI_EXPORTED int64_t
moeMlirLanguageModelGetCachedTokens(MoeMlirLanguageModel session);
/// Forgets every cached token.
MOE_MLIR_CAPI_EXPORTED void
moeMlirLanguageModelReset(MoeMlirLanguageModel session);

/// Runs `numTokens` tokens at the next positions; `logits` receives f32
/// [numTokens, V].
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus
moeMlirLanguageModelForward(MoeMlirLanguageModel session, const int64_t *tokens,
                            size_t numTokens, MoeMlirTensor *logits);

typedef struct MoeMlirGenerationStats {
  double prefillMs;    /* the prompt's forward pass */
  double decodeMs;     /* all decode steps */
  int64_t decodeSteps;
} MoeMlirGenerationStats;

/// Greedy generation from a fresh cache (moe-run --generate): `count` ids
/// into `generated`; `stepLogits` (may be NULL) receives the logits row each
/// was chosen from, f32 [count, V]; `stats` may be NULL.
MOE_MLIR_CAPI_EXPORTED MoeMlirStatus moeMlirLanguageModelGenerate(
    MoeMlirLanguageModel session, const int64_t *prompt, size_t promptLength,
    int64_t count, int64_t *generated, MoeMlirTensor *stepLogits,
    MoeMlirGenerationStats *stats);

/*===----------------------------------------------------------------------===*
 * Threads
 *===----------------------------------------------------------------------===*/

/// Threads of the pool compiled models run their parallel loops on
/// (moe-run --num-threads; default MOE_NUM_THREADS, else all hardware
/// threads). Results do not depend on it.
MOE_MLIR_CAPI_EXPORTED void moeMlirSetNumThreads(int threads);
MOE_MLIR_CAPI_EXPORTED int moeMlirGetNumThreads(void);

#ifdef __cplusplus
}
#endif

#endif /* MOE_MLIR_C_MOEMLIR_H */
