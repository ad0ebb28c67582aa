//===- MoEMlir.cpp - the C API of moe-mlir --------------------------------===//
//
// Part of moe-mlir.
//
// The flows of moe-import, moe-opt, moe-compile and moe-run behind the C
// functions of moe-mlir-c/MoEMlir.h. Messages are the tools' one lines
// without the tool's name.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir-c/MoEMlir.h"

#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Import/HF/Importer.h"
#include "moe-mlir/Import/ONNX/Importer.h"
#include "moe-mlir/InitAll.h"
#include "moe-mlir/Runtime/LanguageModel.h"
#include "moe-mlir/Runtime/Model.h"
#include "moe-mlir/Runtime/ThreadPool.h"
#include "moe-mlir/Runtime/Weights.h"
#include "moe-mlir/Support/FirstError.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

using namespace mlir;

static_assert(static_cast<int>(moe_rt::DType::F32) == MoeMlirDTypeF32 &&
                  static_cast<int>(moe_rt::DType::F16) == MoeMlirDTypeF16 &&
                  static_cast<int>(moe_rt::DType::BF16) == MoeMlirDTypeBF16 &&
                  static_cast<int>(moe_rt::DType::I32) == MoeMlirDTypeI32 &&
                  static_cast<int>(moe_rt::DType::I64) == MoeMlirDTypeI64 &&
                  static_cast<int>(moe_rt::DType::U8) == MoeMlirDTypeU8 &&
                  static_cast<int>(moe_rt::DType::Bool) == MoeMlirDTypeBool,
              "MoeMlirDType mirrors moe_rt::DType");

namespace {

struct StatusImpl {
  MoeMlirStatusCode code;
  std::string message;
};

struct ContextImpl {
  std::unique_ptr<MLIRContext> context;
  std::mutex mutex;
};

struct ModuleImpl {
  ContextImpl *context;
  OwningOpRef<ModuleOp> module;
  /// The file or directory it came from, as the tools name it in messages.
  std::string origin;
};

struct TensorImpl {
  moe_rt::Array array;
};

/// A loaded model and the weights its runs bind; shared with the language
/// model sessions created from it.
struct CompiledModelState {
  std::unique_ptr<moe_rt::CompiledModel> library;
  std::vector<char> bytes; // the shared library, for saving
  std::string sourceName;  // what it was compiled from (the C header says)
  std::string metadata;
  std::vector<std::vector<int64_t>> inputShapes, outputShapes;

  std::mutex mutex;                     // guards everything below
  std::vector<std::string> weightPaths; // added; empty: the recorded one
  bool weightsOverridden = false;
  std::shared_ptr<moe_rt::WeightSet> weights;           // opened on first use
  std::vector<std::optional<moe_rt::TensorView>> bound; // runs' weights

  const moe_rt::ModelInfo &info() const { return library->info(); }
};

struct CompiledModelImpl {
  std::shared_ptr<CompiledModelState> state;
};

struct LanguageModelImpl {
  std::shared_ptr<CompiledModelState> state;
  std::shared_ptr<moe_rt::WeightSet> weights; // the session's views point in
  std::unique_ptr<moe_rt::LanguageModel> session;
  std::mutex mutex; // one call at a time: the caches change
};

} // namespace

/// Runs share the runtime's process-wide thread pool, which runs one
/// parallel loop at a time.
static std::mutex &runMutex() {
  static std::mutex mutex;
  return mutex;
}

static MoeMlirStatus okStatus() { return MoeMlirStatus{nullptr}; }

static MoeMlirStatus failStatus(MoeMlirStatusCode code, std::string message) {
  // One line, whatever produced it.
  for (char &c : message)
    if (c == '\n' || c == '\r')
      c = ' ';
  return MoeMlirStatus{new StatusImpl{code, std::move(message)}};
}

static MoeMlirStatus errorStatus(std::string message) {
  return failStatus(MoeMlirStatusError, std::move(message));
}

static MoeMlirStatus invalidArgument(std::string message) {
  return failStatus(MoeMlirStatusInvalidArgument, std::move(message));
}

static ContextImpl *unwrap(MoeMlirContext c) {
  return static_cast<ContextImpl *>(c.ptr);
}
static ModuleImpl *unwrap(MoeMlirModule m) {
  return static_cast<ModuleImpl *>(m.ptr);
}
static TensorImpl *unwrap(MoeMlirTensor t) {
  return static_cast<TensorImpl *>(t.ptr);
}
static CompiledModelState &unwrap(MoeMlirCompiledModel m) {
  return *static_cast<CompiledModelImpl *>(m.ptr)->state;
}
static LanguageModelImpl *unwrap(MoeMlirLanguageModel l) {
  return static_cast<LanguageModelImpl *>(l.ptr);
}

static MoeMlirTensor wrap(moe_rt::Array array) {
  return MoeMlirTensor{new TensorImpl{std::move(array)}};
}

static bool isFloat(moe_rt::DType dtype) {
  return dtype == moe_rt::DType::F32 || dtype == moe_rt::DType::F16 ||
         dtype == moe_rt::DType::BF16;
}

static bool validDType(int dtype) {
  return dtype >= MoeMlirDTypeF32 && dtype <= MoeMlirDTypeBool;
}

//===----------------------------------------------------------------------===//
// Status, dtypes, tensors
//===----------------------------------------------------------------------===//

MoeMlirStatusCode moeMlirStatusGetCode(MoeMlirStatus status) {
  return status.ptr ? static_cast<StatusImpl *>(status.ptr)->code
                    : MoeMlirStatusSuccess;
}

const char *moeMlirStatusGetMessage(MoeMlirStatus status) {
  return status.ptr ? static_cast<StatusImpl *>(status.ptr)->message.c_str()
                    : "";
}

void moeMlirStatusDestroy(MoeMlirStatus status) {
  delete static_cast<StatusImpl *>(status.ptr);
}

size_t moeMlirDTypeGetSize(MoeMlirDType dtype) {
  return validDType(dtype)
             ? moe_rt::dtypeSize(static_cast<moe_rt::DType>(dtype))
             : 0;
}

const char *moeMlirDTypeGetName(MoeMlirDType dtype) {
  return validDType(dtype)
             ? moe_rt::dtypeName(static_cast<moe_rt::DType>(dtype))
             : "?";
}

void moeMlirTensorDestroy(MoeMlirTensor tensor) { delete unwrap(tensor); }

MoeMlirDType moeMlirTensorGetDType(MoeMlirTensor tensor) {
  return static_cast<MoeMlirDType>(unwrap(tensor)->array.dtype);
}

size_t moeMlirTensorGetRank(MoeMlirTensor tensor) {
  return unwrap(tensor)->array.shape.size();
}

const int64_t *moeMlirTensorGetShape(MoeMlirTensor tensor) {
  return unwrap(tensor)->array.shape.data();
}

void *moeMlirTensorGetData(MoeMlirTensor tensor) {
  return unwrap(tensor)->array.data.data();
}

size_t moeMlirTensorGetNumBytes(MoeMlirTensor tensor) {
  return unwrap(tensor)->array.data.size();
}

/// The view's shape, checked: non-negative sizes whose product fits.
static MoeMlirStatus viewShape(const MoeMlirTensorView &view,
                               std::vector<int64_t> &shape) {
  if (!validDType(view.dtype))
    return invalidArgument("unknown dtype " + std::to_string(view.dtype));
  shape.assign(view.shape, view.shape + view.rank);
  moe_rt::Array probe;
  probe.shape = shape;
  if (probe.numElements() < 0)
    return invalidArgument("invalid shape " + moe_rt::shapeToString(shape));
  return okStatus();
}

MoeMlirStatus moeMlirTensorCreateConverted(const MoeMlirTensorView *view,
                                           MoeMlirDType dtype,
                                           MoeMlirTensor *out) {
  std::vector<int64_t> shape;
  if (MoeMlirStatus st = viewShape(*view, shape); st.ptr)
    return st;
  auto from = static_cast<moe_rt::DType>(view->dtype);
  auto to = static_cast<moe_rt::DType>(dtype);
  if (!validDType(dtype) || (from != to && !(isFloat(from) && isFloat(to))))
    return invalidArgument(std::string("cannot convert ") +
                           moe_rt::dtypeName(from) + " to " +
                           moeMlirDTypeGetName(dtype));
  moe_rt::Array array;
  array.dtype = from;
  array.shape = std::move(shape);
  size_t bytes =
      static_cast<size_t>(array.numElements()) * moe_rt::dtypeSize(from);
  const auto *data = static_cast<const uint8_t *>(view->data);
  array.data.assign(data, data + bytes);
  *out = wrap(moe_rt::convertFloatArray(array, to));
  return okStatus();
}

MoeMlirStatus moeMlirTensorConvert(MoeMlirTensor tensor, MoeMlirDType dtype) {
  moe_rt::Array &array = unwrap(tensor)->array;
  auto to = static_cast<moe_rt::DType>(dtype);
  if (!validDType(dtype) ||
      (array.dtype != to && !(isFloat(array.dtype) && isFloat(to))))
    return invalidArgument(std::string("cannot convert ") +
                           moe_rt::dtypeName(array.dtype) + " to " +
                           moeMlirDTypeGetName(dtype));
  if (array.dtype != to)
    array = moe_rt::convertFloatArray(array, to);
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Contexts and modules
//===----------------------------------------------------------------------===//

/// Passes, pipelines and the host target, once per process (moe-opt's and
/// moe-compile's main do the same).
static void initializeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerAllPasses();
    moe_mlir::registerAllPasses();
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

MoeMlirContext moeMlirContextCreate(void) {
  initializeOnce();
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  auto *impl = new ContextImpl();
  impl->context = std::make_unique<MLIRContext>(registry);
  return MoeMlirContext{impl};
}

void moeMlirContextDestroy(MoeMlirContext context) { delete unwrap(context); }

MoeMlirModelKind moeMlirGetModelKind(const char *path) {
  if (moe_mlir::onnx_import::isOnnxFile(path))
    return MoeMlirModelKindONNX;
  if (moe_mlir::hf::isCheckpointDirectory(path))
    return MoeMlirModelKindHFCheckpoint;
  if (llvm::StringRef(path).ends_with(".so"))
    return MoeMlirModelKindSharedLibrary;
  return MoeMlirModelKindMLIR;
}

static MoeMlirModule wrap(ContextImpl *context, OwningOpRef<ModuleOp> module,
                          std::string origin) {
  return MoeMlirModule{
      new ModuleImpl{context, std::move(module), std::move(origin)}};
}

MoeMlirStatus moeMlirImportHuggingFace(MoeMlirContext context,
                                       const char *directory, bool shapeOnly,
                                       MoeMlirModule *out) {
  ContextImpl *ctx = unwrap(context);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  moe_mlir::FirstError firstError(ctx->context.get());
  moe_mlir::hf::ImportOptions options;
  options.shapeOnly = shapeOnly;
  std::string message;
  OwningOpRef<ModuleOp> module =
      moe_mlir::hf::importModel(*ctx->context, directory, options, message);
  if (!module)
    return errorStatus(
        message.empty()
            ? firstError.message(std::string(directory) + ": import failed")
            : message);
  *out = wrap(ctx, std::move(module), directory);
  return okStatus();
}

MoeMlirStatus moeMlirImportOnnx(MoeMlirContext context, const char *path,
                                bool raiseMoE, MoeMlirModule *out) {
  ContextImpl *ctx = unwrap(context);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  moe_mlir::FirstError firstError(ctx->context.get());
  moe_mlir::onnx_import::ImportOptions options;
  options.raiseMoE = raiseMoE;
  std::string message;
  OwningOpRef<ModuleOp> module = moe_mlir::onnx_import::importOnnxModel(
      *ctx->context, path, options, message);
  if (!module)
    return errorStatus(message.empty() ? firstError.message(std::string(path) +
                                                            ": import failed")
                                       : message);
  *out = wrap(ctx, std::move(module), path);
  return okStatus();
}

/// Parses the buffer in `sourceMgr`; the message names the first error and
/// where it is ("could not parse NAME: LINE:COL: what"), which the tools
/// print on the lines before their "could not parse NAME".
static MoeMlirStatus parseModule(ContextImpl *ctx, llvm::SourceMgr &sourceMgr,
                                 const std::string &name, MoeMlirModule *out) {
  std::string first;
  ScopedDiagnosticHandler handler(
      ctx->context.get(), [&](Diagnostic &diag) -> LogicalResult {
        if (diag.getSeverity() != DiagnosticSeverity::Error)
          return mlir::failure(); // warnings go on to stderr as in the tools
        if (first.empty()) {
          first = diag.str();
          if (auto loc = diag.getLocation()->findInstanceOf<FileLineColLoc>())
            first = std::to_string(loc.getLine()) + ":" +
                    std::to_string(loc.getColumn()) + ": " + first;
        }
        return mlir::success();
      });
  OwningOpRef<ModuleOp> module =
      parseSourceFile<ModuleOp>(sourceMgr, ctx->context.get());
  if (!module)
    return errorStatus("could not parse " + name +
                       (first.empty() ? "" : ": " + first));
  *out = wrap(ctx, std::move(module), name);
  return okStatus();
}

MoeMlirStatus moeMlirModuleParse(MoeMlirContext context, const char *text,
                                 size_t length, const char *sourceName,
                                 MoeMlirModule *out) {
  ContextImpl *ctx = unwrap(context);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  std::string name = sourceName && *sourceName ? sourceName : "<string>";
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(text, length), name),
      llvm::SMLoc());
  return parseModule(ctx, sourceMgr, name, out);
}

MoeMlirStatus moeMlirModuleParseFile(MoeMlirContext context, const char *path,
                                     MoeMlirModule *out) {
  ContextImpl *ctx = unwrap(context);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  std::string message;
  auto file = openInputFile(path, &message);
  if (!file)
    return errorStatus(message);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return parseModule(ctx, sourceMgr, path, out);
}

void moeMlirModuleDestroy(MoeMlirModule module) {
  ModuleImpl *impl = unwrap(module);
  if (!impl)
    return;
  {
    std::lock_guard<std::mutex> lock(impl->context->mutex);
    impl->module = nullptr;
  }
  delete impl;
}

MoeMlirModule moeMlirModuleClone(MoeMlirModule module) {
  ModuleImpl *impl = unwrap(module);
  std::lock_guard<std::mutex> lock(impl->context->mutex);
  return wrap(impl->context, OwningOpRef<ModuleOp>(impl->module->clone()),
              impl->origin);
}

void moeMlirModulePrint(MoeMlirModule module, MoeMlirStringCallback callback,
                        void *userData) {
  ModuleImpl *impl = unwrap(module);
  std::string text;
  {
    std::lock_guard<std::mutex> lock(impl->context->mutex);
    llvm::raw_string_ostream os(text);
    impl->module->print(os);
  }
  callback(text.data(), text.size(), userData);
}

const char *moeMlirModuleGetCheckpoint(MoeMlirModule module) {
  ModuleImpl *impl = unwrap(module);
  std::lock_guard<std::mutex> lock(impl->context->mutex);
  auto attr = (*impl->module)->getAttrOfType<StringAttr>("moe.checkpoint");
  // The attribute's storage lives in the context: the pointer stays valid.
  return attr ? attr.getValue().data() : nullptr;
}

MoeMlirStatus moeMlirModuleVerify(MoeMlirModule module) {
  ModuleImpl *impl = unwrap(module);
  std::lock_guard<std::mutex> lock(impl->context->mutex);
  moe_mlir::FirstError firstError(impl->context->context.get());
  if (failed(verify(*impl->module)))
    return errorStatus(impl->origin + ": " +
                       firstError.message("the module does not verify"));
  return okStatus();
}

/// The first line of what the pipeline parser printed, without its
/// buffer name ("MLIR Textual PassPipeline Parser:1:1: error: ...").
static std::string pipelineParseError(const std::string &printed) {
  llvm::StringRef line = llvm::StringRef(printed).split('\n').first.trim();
  size_t at = line.find(": error: ");
  if (at != llvm::StringRef::npos)
    return line.drop_front(at + strlen(": error: ")).str();
  return line.empty() ? "invalid pass pipeline" : line.str();
}

MoeMlirStatus moeMlirModuleRunPipeline(MoeMlirModule module,
                                       const char *pipeline) {
  ModuleImpl *impl = unwrap(module);
  std::lock_guard<std::mutex> lock(impl->context->mutex);
  MLIRContext *ctx = impl->context->context.get();
  llvm::StringRef text = llvm::StringRef(pipeline).trim();
  PassManager pm(ctx, ModuleOp::getOperationName());
  std::string printed;
  llvm::raw_string_ostream os(printed);
  if (text.starts_with(ModuleOp::getOperationName().str() + "(")) {
    FailureOr<OpPassManager> parsed = parsePassPipeline(text, os);
    if (failed(parsed))
      return invalidArgument("pass pipeline '" + text.str() +
                             "': " + pipelineParseError(printed));
    static_cast<OpPassManager &>(pm) = *parsed;
  } else if (failed(parsePassPipeline(text, pm, os))) {
    return invalidArgument("pass pipeline '" + text.str() +
                           "': " + pipelineParseError(printed));
  }
  moe_mlir::FirstError firstError(ctx);
  if (failed(pm.run(*impl->module)))
    return errorStatus(
        impl->origin + ": " +
        firstError.message("the pass pipeline '" + text.str() + "' failed"));
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Compiling
//===----------------------------------------------------------------------===//

void moeMlirCompileOptionsInit(MoeMlirCompileOptions *options) {
  options->target = "cpu";
  options->expertParallelism = 1;
  options->cpu = "native";
  options->entry = nullptr;
  options->bf16Dot = "auto";
  options->optimize = nullptr;
}

static MoeMlirStatus readFile(const std::string &path,
                              std::vector<char> &bytes) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return errorStatus("cannot read " + path + ": " +
                       buffer.getError().message());
  bytes.assign((*buffer)->getBufferStart(), (*buffer)->getBufferEnd());
  return okStatus();
}

/// Loads the library at `path` (which may then be removed) into a new
/// compiled model.
static MoeMlirStatus loadLibrary(const std::string &path,
                                 std::vector<char> bytes,
                                 std::string sourceName,
                                 MoeMlirCompiledModel *out) {
  auto state = std::make_shared<CompiledModelState>();
  if (moe_rt::Status st = moe_rt::CompiledModel::load(path, state->library);
      !st)
    return errorStatus(st.message);
  state->bytes = std::move(bytes);
  state->sourceName = std::move(sourceName);
  state->metadata = moe_rt::serializeModelInfo(state->info());
  state->bound.resize(state->info().inputs.size());
  *out = MoeMlirCompiledModel{new CompiledModelImpl{std::move(state)}};
  return okStatus();
}

MoeMlirStatus moeMlirModuleCompile(MoeMlirModule module,
                                   const MoeMlirCompileOptions *options,
                                   MoeMlirCompiledModel *out) {
  MoeMlirCompileOptions defaults;
  moeMlirCompileOptionsInit(&defaults);
  if (!options)
    options = &defaults;
  std::string target = options->target ? options->target : "cpu";
  if (target == "cuda")
    return failStatus(
        MoeMlirStatusNotImplemented,
        "target 'cuda': GPU code generation is not implemented yet "
        "(compile for target 'cpu')");
  if (target != "cpu")
    return invalidArgument("unknown target '" + target +
                           "' (expected 'cpu' or 'cuda')");
  if (options->expertParallelism < 1)
    return invalidArgument("expert parallelism must be at least 1, got " +
                           std::to_string(options->expertParallelism));
  std::string cpu = options->cpu && *options->cpu ? options->cpu : "native";
  std::string entry = options->entry ? options->entry : "";
  std::string error;
  FailureOr<moe_mlir::ContractionOptions> contraction =
      moe_mlir::cpuContractionOptions(
          cpu, options->bf16Dot ? options->bf16Dot : "auto", error);
  if (failed(contraction))
    return invalidArgument(error);
  moe_mlir::LowerOptions lowering;
  lowering.contraction = *contraction;
  if (failed(moe_mlir::parseOptimizeOptions(
          options->optimize ? options->optimize : "", lowering.optimize,
          lowering.optimization, error)))
    return invalidArgument(error);

  ModuleImpl *impl = unwrap(module);
  llvm::SmallString<128> dir;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("moe-mlir-compile", dir))
    return errorStatus("cannot create a temporary directory: " + ec.message());
  std::string object = (dir + "/model.o").str();
  std::string library = (dir + "/model.so").str();
  auto cleanUp = [&] {
    llvm::sys::fs::remove(object);
    llvm::sys::fs::remove(library);
    llvm::sys::fs::remove(dir);
  };

  {
    std::lock_guard<std::mutex> lock(impl->context->mutex);
    // The caller's module stays as it was.
    OwningOpRef<ModuleOp> copy(impl->module->clone());
    moe_mlir::FirstError firstError(impl->context->context.get());
    // Sharded over N ranks (contiguous placement): the library is saved
    // and run as N ranks by moe-run --ep N.
    moe_mlir::ExpertParallelOptions parallel;
    parallel.ranks = static_cast<int>(options->expertParallelism);
    if (failed(moe_mlir::shardExpertParallel(*copy, parallel))) {
      cleanUp();
      return errorStatus(impl->origin + ": " +
                         firstError.message("could not shard it for expert "
                                            "parallelism"));
    }
    FailureOr<moe_rt::ModelInfo> info = moe_mlir::prepareEntry(*copy, entry);
    if (failed(info)) {
      cleanUp();
      return errorStatus(impl->origin + ": " +
                         firstError.message("no entry point to compile"));
    }
    if (failed(moe_mlir::lowerForCpu(*copy, lowering))) {
      cleanUp();
      return errorStatus(impl->origin + ": " +
                         firstError.message("could not lower it for the CPU"));
    }
    if (failed(moe_mlir::addModelAbi(*copy, *info))) {
      cleanUp();
      return errorStatus(impl->origin + ": " +
                         firstError.message("could not add the model ABI"));
    }
    std::string message;
    if (failed(moe_mlir::emitObjectFile(*copy, object, cpu, message))) {
      cleanUp();
      return errorStatus(message);
    }
  }
  std::string message;
  if (failed(moe_mlir::linkSharedLibrary(object, library, message))) {
    cleanUp();
    return errorStatus(message);
  }
  std::vector<char> bytes;
  MoeMlirStatus st = readFile(library, bytes);
  if (!st.ptr)
    st = loadLibrary(library, std::move(bytes),
                     llvm::sys::path::filename(impl->origin).str(), out);
  cleanUp(); // the loaded library stays mapped
  return st;
}

//===----------------------------------------------------------------------===//
// Compiled models
//===----------------------------------------------------------------------===//

MoeMlirStatus moeMlirCompiledModelLoad(const char *path,
                                       MoeMlirCompiledModel *out) {
  std::vector<char> bytes;
  MoeMlirCompiledModel model{nullptr};
  if (MoeMlirStatus st =
          loadLibrary(path, {}, llvm::sys::path::filename(path).str(), &model);
      st.ptr)
    return st;
  if (MoeMlirStatus st = readFile(path, bytes); st.ptr) {
    moeMlirCompiledModelDestroy(model);
    return st;
  }
  unwrap(model).bytes = std::move(bytes);
  *out = model;
  return okStatus();
}

void moeMlirCompiledModelDestroy(MoeMlirCompiledModel model) {
  delete static_cast<CompiledModelImpl *>(model.ptr);
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so
/// that a failure leaves no partial file.
static MoeMlirStatus writeFileAtomically(const std::string &path,
                                         llvm::StringRef bytes) {
  std::string partial = path + ".partial";
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(partial, ec, llvm::sys::fs::OF_None);
    if (ec)
      return errorStatus("cannot write " + path + ": " + ec.message());
    os << bytes;
    os.close();
    if (os.has_error()) {
      std::string why = os.error().message();
      os.clear_error();
      llvm::sys::fs::remove(partial);
      return errorStatus("cannot write " + path + ": " + why);
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(partial, path)) {
    llvm::sys::fs::remove(partial);
    return errorStatus("cannot write " + path + ": " + ec.message());
  }
  return okStatus();
}

MoeMlirStatus moeMlirCompiledModelSave(MoeMlirCompiledModel model,
                                       const char *path) {
  CompiledModelState &state = unwrap(model);
  MoeMlirStatus st = writeFileAtomically(
      path, llvm::StringRef(state.bytes.data(), state.bytes.size()));
  if (st.ptr)
    return st;
  // A library, like moe-compile's output: readable and executable.
  llvm::sys::fs::setPermissions(path, llvm::sys::fs::perms::all_read |
                                          llvm::sys::fs::perms::owner_write |
                                          llvm::sys::fs::perms::all_exe);
  return okStatus();
}

MoeMlirStatus moeMlirCompiledModelWriteHeader(MoeMlirCompiledModel model,
                                              const char *path) {
  CompiledModelState &state = unwrap(model);
  return writeFileAtomically(
      path, moe_mlir::generateHeader(state.info(), state.sourceName));
}

const char *moeMlirCompiledModelGetEntry(MoeMlirCompiledModel model) {
  return unwrap(model).info().entry.c_str();
}

const char *moeMlirCompiledModelGetCheckpoint(MoeMlirCompiledModel model) {
  const std::string &path = unwrap(model).info().weightsPath;
  return path.empty() ? nullptr : path.c_str();
}

const char *moeMlirCompiledModelGetMetadata(MoeMlirCompiledModel model) {
  return unwrap(model).metadata.c_str();
}

size_t moeMlirCompiledModelGetNumInputs(MoeMlirCompiledModel model) {
  return unwrap(model).info().inputs.size();
}

size_t moeMlirCompiledModelGetNumOutputs(MoeMlirCompiledModel model) {
  return unwrap(model).info().outputs.size();
}

static MoeMlirTensorSpec specOf(const moe_rt::TensorSpec &spec) {
  return MoeMlirTensorSpec{spec.name.c_str(),
                           static_cast<MoeMlirDType>(spec.dtype),
                           spec.shape.size(), spec.shape.data()};
}

MoeMlirTensorSpec moeMlirCompiledModelGetInput(MoeMlirCompiledModel model,
                                               size_t index) {
  return specOf(unwrap(model).info().inputs.at(index));
}

MoeMlirTensorSpec moeMlirCompiledModelGetOutput(MoeMlirCompiledModel model,
                                                size_t index) {
  return specOf(unwrap(model).info().outputs.at(index));
}

ptrdiff_t moeMlirCompiledModelFindInput(MoeMlirCompiledModel model,
                                        const char *name) {
  return unwrap(model).info().findInput(name);
}

/// Opens the weights on first use: the checkpoints added, else the one the
/// model records (as moe-run does with --weights). Called with the state's
/// lock held.
static MoeMlirStatus openWeights(CompiledModelState &state) {
  if (state.weights)
    return okStatus();
  auto weights = std::make_shared<moe_rt::WeightSet>();
  std::vector<std::string> paths = state.weightPaths;
  if (!state.weightsOverridden && !state.info().weightsPath.empty())
    paths.push_back(state.info().weightsPath);
  for (const std::string &path : paths)
    if (moe_rt::Status st = weights->addCheckpoint(path); !st)
      return errorStatus(st.message);
  state.weights = std::move(weights);
  return okStatus();
}

MoeMlirStatus moeMlirCompiledModelAddWeights(MoeMlirCompiledModel model,
                                             const char *path) {
  CompiledModelState &state = unwrap(model);
  std::lock_guard<std::mutex> lock(state.mutex);
  // Check the checkpoint now, as moe-run does before running.
  moe_rt::WeightSet probe;
  if (moe_rt::Status st = probe.addCheckpoint(path); !st)
    return errorStatus(st.message);
  state.weightPaths.push_back(path);
  state.weightsOverridden = true;
  // Sessions created before keep the weights they were bound from.
  state.weights.reset();
  state.bound.assign(state.info().inputs.size(), std::nullopt);
  return okStatus();
}

bool moeMlirCompiledModelHasWeight(MoeMlirCompiledModel model, size_t index) {
  CompiledModelState &state = unwrap(model);
  std::lock_guard<std::mutex> lock(state.mutex);
  if (index >= state.info().inputs.size())
    return false;
  if (MoeMlirStatus st = openWeights(state); st.ptr) {
    moeMlirStatusDestroy(st);
    return false;
  }
  return state.weights->provides(state.info().inputs[index]);
}

MoeMlirStatus moeMlirCompiledModelRun(MoeMlirCompiledModel model,
                                      size_t numInputs,
                                      const MoeMlirTensorView *const *inputs,
                                      MoeMlirTensor *outputs) {
  CompiledModelState &state = unwrap(model);
  const moe_rt::ModelInfo &info = state.info();
  if (numInputs != info.inputs.size())
    return invalidArgument("@" + info.entry + " takes " +
                           std::to_string(info.inputs.size()) +
                           " inputs, got " + std::to_string(numInputs));
  std::vector<moe_rt::TensorView> views(numInputs);
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    for (size_t i = 0; i < numInputs; ++i) {
      const moe_rt::TensorSpec &spec = info.inputs[i];
      if (inputs[i]) {
        const MoeMlirTensorView &view = *inputs[i];
        if (!validDType(view.dtype))
          return invalidArgument("input '" + spec.name + "': unknown dtype " +
                                 std::to_string(view.dtype));
        views[i] = moe_rt::TensorView{
            static_cast<moe_rt::DType>(view.dtype),
            std::vector<int64_t>(view.shape, view.shape + view.rank),
            view.data};
        if (moe_rt::Status st = moe_rt::checkInput(spec, views[i]); !st)
          return invalidArgument(st.message);
        continue;
      }
      if (state.bound[i]) {
        views[i] = *state.bound[i];
        continue;
      }
      if (MoeMlirStatus st = openWeights(state); st.ptr)
        return st;
      if (!state.weights->provides(spec))
        return invalidArgument(
            "missing input '" + spec.name + "' (input " + std::to_string(i) +
            " of @" + info.entry + ": " + moe_rt::dtypeName(spec.dtype) + " " +
            moe_rt::shapeToString(spec.shape) + ")" +
            (state.weights->empty()
                 ? ""
                 : "; no tensor of that name in the weights"));
      moe_rt::TensorView view;
      if (moe_rt::Status st = state.weights->bind(spec, view); !st)
        return errorStatus(st.message);
      state.bound[i] = view;
      views[i] = view;
    }
  }
  std::vector<moe_rt::Array> results;
  {
    std::lock_guard<std::mutex> lock(runMutex());
    if (moe_rt::Status st = state.library->run(views, results); !st)
      return invalidArgument(st.message);
  }
  for (size_t i = 0; i < results.size(); ++i)
    outputs[i] = wrap(std::move(results[i]));
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Language models
//===----------------------------------------------------------------------===//

MoeMlirStatus moeMlirLanguageModelCreate(MoeMlirCompiledModel model,
                                         MoeMlirLanguageModel *out) {
  auto impl = std::make_unique<LanguageModelImpl>();
  impl->state = static_cast<CompiledModelImpl *>(model.ptr)->state;
  CompiledModelState &state = *impl->state;
  std::lock_guard<std::mutex> lock(state.mutex);
  if (MoeMlirStatus st = openWeights(state); st.ptr)
    return st;
  impl->weights = state.weights;
  const moe_rt::CompiledModel *library = state.library.get();
  moe_rt::RunFn run = [library](const std::vector<moe_rt::TensorView> &inputs,
                                std::vector<moe_rt::Array> &outputs) {
    std::lock_guard<std::mutex> lock(runMutex());
    return library->run(inputs, outputs);
  };
  if (moe_rt::Status st = moe_rt::LanguageModel::create(
          state.info(), run, *impl->weights, impl->session);
      !st) {
    bool convention = st.message.find("is not a language model entry point") !=
                      std::string::npos;
    return convention ? invalidArgument(st.message) : errorStatus(st.message);
  }
  *out = MoeMlirLanguageModel{impl.release()};
  return okStatus();
}

void moeMlirLanguageModelDestroy(MoeMlirLanguageModel session) {
  delete unwrap(session);
}

int64_t moeMlirLanguageModelGetVocabSize(MoeMlirLanguageModel session) {
  return unwrap(session)->session->vocabSize();
}

int64_t moeMlirLanguageModelGetCachedTokens(MoeMlirLanguageModel session) {
  LanguageModelImpl *impl = unwrap(session);
  std::lock_guard<std::mutex> lock(impl->mutex);
  return impl->session->cachedTokens();
}

void moeMlirLanguageModelReset(MoeMlirLanguageModel session) {
  LanguageModelImpl *impl = unwrap(session);
  std::lock_guard<std::mutex> lock(impl->mutex);
  impl->session->reset();
}

MoeMlirStatus moeMlirLanguageModelForward(MoeMlirLanguageModel session,
                                          const int64_t *tokens,
                                          size_t numTokens,
                                          MoeMlirTensor *logits) {
  std::vector<int64_t> ids(tokens, tokens + numTokens);
  LanguageModelImpl *impl = unwrap(session);
  std::lock_guard<std::mutex> lock(impl->mutex);
  moe_rt::Array result;
  if (moe_rt::Status st = impl->session->forward(ids, result); !st)
    return invalidArgument(st.message);
  *logits = wrap(std::move(result));
  return okStatus();
}

MoeMlirStatus moeMlirLanguageModelGenerate(MoeMlirLanguageModel session,
                                           const int64_t *prompt,
                                           size_t promptLength, int64_t count,
                                           int64_t *generated,
                                           MoeMlirTensor *stepLogits,
                                           MoeMlirGenerationStats *stats) {
  if (count < 0)
    return invalidArgument("the number of tokens to generate must be at "
                           "least 0, got " +
                           std::to_string(count));
  std::vector<int64_t> ids(prompt, prompt + promptLength);
  LanguageModelImpl *impl = unwrap(session);
  std::lock_guard<std::mutex> lock(impl->mutex);
  std::vector<int64_t> result;
  moe_rt::GenerationStats runStats;
  moe_rt::Array steps;
  if (moe_rt::Status st = impl->session->generate(
          ids, count, result, &runStats, stepLogits ? &steps : nullptr);
      !st)
    return invalidArgument(st.message);
  std::copy(result.begin(), result.end(), generated);
  if (stepLogits)
    *stepLogits = wrap(std::move(steps));
  if (stats)
    *stats = MoeMlirGenerationStats{runStats.prefillMs, runStats.decodeMs,
                                    runStats.decodeSteps};
  return okStatus();
}

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

void moeMlirSetNumThreads(int threads) { moe_rt::setNumThreads(threads); }

int moeMlirGetNumThreads(void) { return moe_rt::numThreads(); }
