//===- moe-run.cpp - run a model on NumPy inputs --------------------------===//
//
// Part of moe-mlir.
//
// moe-run MODEL|--onnx FILE --input NAME=FILE.npy ... [--output-dir DIR]
//         [--repeat N]
// moe-run MODEL|--hf DIR --tokens 1,2,3 [--logits-out F.npy] [--generate N]
//
// MODEL is a shared library compiled by moe-compile, an MLIR file (compiled
// for the host CPU with moe-cpu-pipeline and JIT-run), an ONNX file or a
// Hugging Face checkpoint directory (imported, then JIT-run). Inputs that no
// --input names are looked up by name in the --weights checkpoints
// (safetensors, or an ONNX file's initializers),
// else in the checkpoint the model was compiled from, memory-mapped and
// passed without a copy when their dtype is the model's (see
// moe-mlir/Runtime/Weights.h).
//
// With --tokens the model must be a language model (Runtime/LanguageModel.h):
// --logits-out writes the prompt's logits [S, V] as float32 .npy;
// --generate N prints N greedily generated token ids, comma-separated, on
// one line of stdout, and the prefill time and decode tokens/s on stderr.
//
// Inputs
// are bound by name (the `moe.name` of each argument, else argN); every
// result is written as DIR/NAME.npy, characters of NAME other than
// [A-Za-z0-9._-] replaced by '_' (ONNX names often hold '/' or ':'). bf16
// and f16 tensors are read from float32 (or float16) .npy files, rounded to
// nearest even; f16 results are written as float16, bf16 results (NumPy
// has no bfloat16) as float32. With --repeat N the model runs once to warm up, then N times, and
// the median time per run goes to stderr. Every error is one line on stderr
// and exit status 1; no output file is written unless the run succeeded.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Import/HF/Importer.h"
#include "moe-mlir/Import/ONNX/Importer.h"
#include "moe-mlir/InitAll.h"
#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/LanguageModel.h"
#include "moe-mlir/Runtime/Model.h"
#include "moe-mlir/Runtime/Npy.h"
#include "moe-mlir/Runtime/SafeTensors.h"
#include "moe-mlir/Runtime/ThreadPool.h"
#include "moe-mlir/Runtime/Weights.h"
#include "moe-mlir/Support/FirstError.h"
#include "moe-mlir/Support/Progress.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/TargetSelect.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sys/stat.h>

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string>
    modelPath(cl::Positional,
              cl::desc("<model.so | model.mlir | checkpoint directory>"));
static cl::opt<std::string>
    hfDir("hf", cl::desc("A Hugging Face checkpoint directory to import and "
                         "run (instead of MODEL)"),
          cl::value_desc("DIR"));
static cl::opt<std::string>
    onnxFile("onnx", cl::desc("An ONNX model to import and run (instead of "
                              "MODEL)"),
             cl::value_desc("FILE.onnx"));
static cl::opt<std::string>
    tokensOpt("tokens",
              cl::desc("Comma-separated prompt token ids (language models)"),
              cl::value_desc("ID,ID,..."));
static cl::opt<std::string>
    logitsOut("logits-out",
              cl::desc("With --tokens: write the prompt's logits [S, V] "
                       "(float32) to this .npy file"),
              cl::value_desc("FILE.npy"));
static cl::opt<std::string> generateLogitsOut(
    "generate-logits-out",
    cl::desc("With --generate: write the logits row each generated token "
             "was chosen from, [N, V] float32, to this .npy file"),
    cl::value_desc("FILE.npy"));
static cl::opt<int> generateCount(
    "generate",
    cl::desc("With --tokens: generate N tokens greedily and print their ids"),
    cl::value_desc("N"), cl::init(-1));
static cl::list<std::string>
    inputs("input", cl::desc("NAME=FILE.npy: the value of input NAME"),
           cl::value_desc("NAME=FILE"));
static cl::list<std::string> weightFiles(
    "weights",
    cl::desc("A safetensors file, sharded index or checkpoint directory: "
             "inputs not given with --input are taken from it by name, "
             "memory-mapped without a copy"),
    cl::value_desc("PATH"));
static cl::opt<std::string> outputDir("output-dir",
                                      cl::desc("Directory for NAME.npy results"),
                                      cl::value_desc("DIR"));
static cl::opt<std::string>
    entryName("entry", cl::desc("MLIR only: the function to run (default: the "
                                "only public function, or 'main')"));
static cl::opt<std::string> bf16Dot(
    "bf16-dot",
    cl::desc("MLIR, checkpoint and ONNX inputs: bf16 weights use AVX512-BF16 "
             "dot products on bf16-rounded activations: auto (where the host "
             "has avx512bf16, default), on or off (exact f32 products)"),
    cl::init("auto"));
static cl::opt<unsigned>
    numThreadsOpt("num-threads",
            cl::desc("Threads of the model's pool (default: MOE_NUM_THREADS, "
                     "else all hardware threads)"),
            cl::init(0));
static cl::opt<unsigned>
    repeat("repeat",
           cl::desc("Run N timed times after a warm-up; median time to stderr"),
           cl::init(0));

[[noreturn]] static void fail(const llvm::Twine &message) {
  llvm::errs() << "moe-run: " << message << "\n";
  std::exit(1);
}

/// Reads the .npy for `spec`, converting float32/float16 data to bf16/f16
/// when the model takes those.
static moe_rt::Array loadInput(const moe_rt::TensorSpec &spec,
                               const std::string &path) {
  moe_rt::Array array;
  if (moe_rt::Status st = moe_rt::readNpy(path, array); !st)
    fail(st.message);
  array = moe_rt::convertFloatArray(array, spec.dtype);
  moe_rt::Status st =
      moe_rt::checkInput(spec, moe_rt::TensorView::of(array));
  if (!st)
    fail(st.message + " (" + path + ")");
  return array;
}

/// bf16 results are written as float32 .npy files (NumPy has no bfloat16).
static moe_rt::Array toWritable(moe_rt::Array array) {
  using moe_rt::DType;
  if (array.dtype != DType::BF16)
    return array;
  int64_t n = array.numElements();
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, array.data.data() + 2 * i, 2);
    float v = moe_rt::bf16ToFloat(bits);
    std::memcpy(bytes.data() + 4 * i, &v, 4);
  }
  array.data = std::move(bytes);
  array.dtype = DType::F32;
  return array;
}

namespace {
/// A model ready to run: its description and its entry point, from a shared
/// library or from the JIT.
struct Runnable {
  moe_rt::ModelInfo info;
  moe_rt::InvokeFn invoke = nullptr;
  std::unique_ptr<moe_rt::CompiledModel> library;
  std::unique_ptr<MLIRContext> context;
  std::unique_ptr<ExecutionEngine> engine;
};
} // namespace

static Runnable loadLibrary(const std::string &path) {
  Runnable r;
  if (moe_rt::Status st = moe_rt::CompiledModel::load(path, r.library); !st)
    fail(st.message);
  r.info = r.library->info();
  return r;
}

static std::unique_ptr<MLIRContext> makeContext() {
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  return std::make_unique<MLIRContext>(registry);
}

/// Lowers `module` for the host CPU and JIT-compiles it into `r`.
static void jitCompile(Runnable &r, OwningOpRef<ModuleOp> module,
                       const std::string &origin,
                       moe_mlir::Progress &progress) {
  moe_mlir::FirstError firstError(module->getContext());
  FailureOr<moe_rt::ModelInfo> info =
      moe_mlir::prepareEntry(*module, entryName);
  if (failed(info))
    fail(origin + ": " + firstError.message("no entry point to run"));
  r.info = *info;
  moe_mlir::LowerOptions lowering;
  std::string error;
  FailureOr<moe_mlir::ContractionOptions> contraction =
      moe_mlir::cpuContractionOptions("native", bf16Dot, error);
  if (failed(contraction))
    fail(error);
  lowering.contraction = *contraction;
  lowering.beforePass = [&](llvm::StringRef pass) {
    progress.update(("compiling: " + pass).str());
  };
  if (failed(moe_mlir::lowerForCpu(*module, lowering)) ||
      failed(moe_mlir::addModelAbi(*module, r.info)))
    fail(origin + ": " + firstError.message("could not compile it for the CPU"));

  progress.update("generating machine code", 0, 0, true);
  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(3, 0, nullptr);
  ExecutionEngineOptions options;
  options.transformer = optimize;
  auto engine = ExecutionEngine::create(*module, options);
  if (!engine)
    fail("JIT compilation of " + origin + " failed: " +
         llvm::toString(engine.takeError()));
  r.engine = std::move(*engine);
  auto fn = r.engine->lookup("moe_model_invoke");
  if (!fn)
    fail("JIT: " + llvm::toString(fn.takeError()));
  r.invoke = reinterpret_cast<moe_rt::InvokeFn>(*fn);
  if (auto setPool = r.engine->lookup("moe_model_set_parallel_for"))
    reinterpret_cast<void (*)(void *)>(*setPool)(
        reinterpret_cast<void *>(&moe_rt_parallel_for));
  else
    llvm::consumeError(setPool.takeError());
  progress.clear();
}

static Runnable compileMlir(const std::string &path,
                            moe_mlir::Progress &progress) {
  Runnable r;
  r.context = makeContext();
  std::string error;
  auto file = openInputFile(path, &error);
  if (!file)
    fail(error);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, r.context.get());
  OwningOpRef<ModuleOp> module =
      parseSourceFile<ModuleOp>(sourceMgr, r.context.get());
  if (!module)
    fail("could not parse " + path);
  jitCompile(r, std::move(module), path, progress);
  return r;
}

static Runnable importCheckpoint(const std::string &dir,
                                 moe_mlir::Progress &progress) {
  Runnable r;
  r.context = makeContext();
  progress.update("importing " + dir, 0, 0, true);
  std::string error;
  OwningOpRef<ModuleOp> module = moe_mlir::hf::importModel(
      *r.context, dir, moe_mlir::hf::ImportOptions(), error);
  if (!module)
    fail(error);
  jitCompile(r, std::move(module), dir, progress);
  return r;
}

static Runnable importOnnx(const std::string &path,
                           moe_mlir::Progress &progress) {
  Runnable r;
  r.context = makeContext();
  progress.update("importing " + path, 0, 0, true);
  std::string error;
  OwningOpRef<ModuleOp> module = moe_mlir::onnx_import::importOnnxModel(
      *r.context, path, moe_mlir::onnx_import::ImportOptions(), error);
  if (!module)
    fail(error);
  jitCompile(r, std::move(module), path, progress);
  return r;
}

/// A result name as a file name: characters other than [A-Za-z0-9._-]
/// become '_'.
static std::string fileNameFor(const std::string &name) {
  std::string out = name;
  for (char &c : out)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-'))
      c = '_';
  if (out.empty() || out == "." || out == "..")
    out = "_" + out;
  return out;
}

/// Parses "1,2,3" (non-negative integers).
static std::vector<int64_t> parseTokens(const std::string &text) {
  std::vector<int64_t> tokens;
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(text).split(parts, ',');
  for (llvm::StringRef part : parts) {
    int64_t id;
    if (part.trim().getAsInteger(10, id) || id < 0)
      fail("--tokens: '" + part + "' is not a token id (expected "
           "comma-separated non-negative integers)");
    tokens.push_back(id);
  }
  if (tokens.empty())
    fail("--tokens: no token ids");
  return tokens;
}

/// --tokens: prefill, logits, greedy generation.
static int runLanguageModel(Runnable &model, moe_rt::WeightSet &weights,
                            const std::vector<int64_t> &prompt,
                            moe_mlir::Progress &progress) {
  moe_rt::RunFn run = [&](const std::vector<moe_rt::TensorView> &inputs,
                          std::vector<moe_rt::Array> &outputs) {
    return model.library ? model.library->run(inputs, outputs)
                         : moe_rt::invoke(model.invoke, model.info, inputs,
                                          outputs);
  };
  std::unique_ptr<moe_rt::LanguageModel> lm;
  moe_rt::Status st = moe_rt::LanguageModel::create(
      model.info, run, weights, lm, [&](size_t done, size_t total) {
        progress.update("binding weights", done, total);
      });
  progress.clear();
  if (!st)
    fail(st.message);
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] >= lm->vocabSize())
      fail("--tokens: token id " + llvm::Twine(prompt[i]) + " (position " +
           llvm::Twine(i) + ") is outside the vocabulary [0, " +
           llvm::Twine(lm->vocabSize()) + ")");

  if (!logitsOut.empty()) {
    moe_rt::Array logits;
    if (moe_rt::Status s = lm->forward(prompt, logits); !s)
      fail(s.message);
    if (moe_rt::Status s = moe_rt::writeNpy(logitsOut, logits); !s)
      fail(s.message);
  }
  if (generateCount >= 0) {
    std::vector<int64_t> generated;
    moe_rt::GenerationStats stats;
    moe_rt::Array stepLogits;
    if (moe_rt::Status s =
            lm->generate(prompt, generateCount, generated, &stats,
                         generateLogitsOut.empty() ? nullptr : &stepLogits);
        !s)
      fail(s.message);
    if (!generateLogitsOut.empty())
      if (moe_rt::Status s = moe_rt::writeNpy(generateLogitsOut, stepLogits);
          !s)
        fail(s.message);
    std::string line;
    for (size_t i = 0; i < generated.size(); ++i)
      line += (i ? "," : "") + std::to_string(generated[i]);
    llvm::outs() << line << "\n";
    llvm::outs().flush();
    double tokensPerSecond =
        stats.decodeSteps > 0 ? stats.decodeSteps * 1000.0 / stats.decodeMs
                              : 0.0;
    llvm::errs() << llvm::format(
        "moe-run: prefill %zu tokens %.2f ms; decode %lld tokens %.2f ms "
        "(%.1f tokens/s)\n",
        prompt.size(), stats.prefillMs,
        static_cast<long long>(stats.decodeSteps), stats.decodeMs,
        tokensPerSecond);
  }
  return 0;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "moe-mlir model runner\n");
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  registerAllPasses();
  moe_mlir::registerAllPasses();

  if (numThreadsOpt > 0)
    moe_rt::setNumThreads(static_cast<int>(numThreadsOpt));
  int sources = !modelPath.empty() + !hfDir.empty() + !onnxFile.empty();
  if (sources != 1)
    fail(sources == 0 ? "no model: give MODEL, --onnx FILE or --hf DIR"
                      : "give one of MODEL, --onnx FILE and --hf DIR");
  bool languageModel = tokensOpt.getNumOccurrences() > 0;
  std::vector<int64_t> prompt;
  if (languageModel)
    prompt = parseTokens(tokensOpt); // before any compiling
  if (!languageModel && (!logitsOut.empty() || generateCount >= 0))
    fail("--logits-out and --generate need --tokens");
  if (!generateLogitsOut.empty() && generateCount < 0)
    fail("--generate-logits-out needs --generate N");
  if (languageModel && logitsOut.empty() && generateCount < 0)
    fail("--tokens needs --logits-out FILE.npy and/or --generate N");
  if (languageModel && !inputs.empty())
    fail("--tokens and --input cannot be combined");
  if (!outputDir.empty()) {
    struct stat st;
    if (stat(outputDir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      fail("--output-dir " + outputDir + " is not a directory");
  }
  llvm::StringMap<std::string> given;
  for (const std::string &spec : inputs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("--input expects NAME=FILE.npy, got '" + spec + "'");
    given[spec.substr(0, eq)] = spec.substr(eq + 1);
  }

  moe_mlir::Progress progress("moe-run");
  std::string path =
      !hfDir.empty() ? hfDir : !onnxFile.empty() ? onnxFile : modelPath;
  Runnable model;
  if (!onnxFile.empty() || moe_mlir::onnx_import::isOnnxFile(path))
    model = importOnnx(path, progress);
  else if (!hfDir.empty() || moe_mlir::hf::isCheckpointDirectory(path))
    model = importCheckpoint(path, progress);
  else if (llvm::StringRef(path).ends_with(".so"))
    model = loadLibrary(path);
  else
    model = compileMlir(path, progress);
  const moe_rt::ModelInfo &info = model.info;

  // Weight checkpoints, memory-mapped: --weights, else the model's own.
  moe_rt::WeightSet weights;
  for (const std::string &w : weightFiles)
    if (moe_rt::Status st = weights.addCheckpoint(w); !st)
      fail(st.message);
  if (weightFiles.empty() && !info.weightsPath.empty())
    if (moe_rt::Status st = weights.addCheckpoint(info.weightsPath); !st)
      fail(st.message);

  if (languageModel)
    return runLanguageModel(model, weights, prompt, progress);

  // Inputs by name: --input .npy files first, then the checkpoints.
  std::vector<std::unique_ptr<moe_rt::Array>> owned;
  std::vector<moe_rt::TensorView> views;
  std::set<std::string> used;
  for (size_t i = 0; i < info.inputs.size(); ++i) {
    const moe_rt::TensorSpec &spec = info.inputs[i];
    auto it = given.find(spec.name);
    if (it != given.end()) {
      owned.push_back(
          std::make_unique<moe_rt::Array>(loadInput(spec, it->second)));
      views.push_back(moe_rt::TensorView::of(*owned.back()));
      used.insert(spec.name);
      continue;
    }
    if (!weights.provides(spec))
      fail("missing --input " + spec.name + "=FILE.npy (input " +
           llvm::Twine(i) + " of @" + info.entry + ": " +
           moe_rt::dtypeName(spec.dtype) + " " +
           moe_rt::shapeToString(spec.shape) + ")" +
           (weights.empty() ? "" : "; no tensor of that name in --weights"));
    moe_rt::TensorView view;
    if (moe_rt::Status st = weights.bind(spec, view); !st)
      fail(st.message);
    views.push_back(view);
  }
  for (auto &kv : given)
    if (!used.count(kv.getKey().str()))
      fail("--input " + kv.getKey() + ": @" + info.entry +
           " has no input of that name");

  std::vector<moe_rt::Array> outputs;
  auto runOnce = [&] {
    moe_rt::Status st = model.library
                            ? model.library->run(views, outputs)
                            : moe_rt::invoke(model.invoke, info, views, outputs);
    if (!st)
      fail(st.message);
  };
  runOnce();
  if (repeat > 0) {
    std::vector<double> ms;
    for (unsigned r = 0; r < repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      runOnce();
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    double median = ms.size() % 2 ? ms[ms.size() / 2]
                                  : 0.5 * (ms[ms.size() / 2 - 1] +
                                           ms[ms.size() / 2]);
    llvm::errs() << "moe-run: @" << info.entry << " median "
                 << llvm::format("%.4f", median) << " ms over " << repeat
                 << " runs\n";
  }

  if (!outputDir.empty())
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::string path =
          outputDir + "/" + fileNameFor(info.outputs[i].name) + ".npy";
      if (moe_rt::Status st = moe_rt::writeNpy(path, toWritable(outputs[i]));
          !st)
        fail(st.message);
    }
  return 0;
}
