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
// has no bfloat16) as float32. With --repeat N the model runs once to warm
// up, then N times, and the median time per run goes to stderr (with
// --generate: the median prefill and decode times of N more generations). Every error
// is one line on stderr and exit status 1; no output file is written unless
// the run succeeded.
//
// Expert parallelism (see moe-mlir/Runtime/ExpertParallel.h):
//
// moe-run MODEL ... --ep N [--backend local|mpi]
//         [--placement contiguous|round-robin|balanced] [--redundant R]
//         [--routing-profile FILE.json]
//
// runs the model as an EP group of N ranks: each rank holds its own expert
// slots' weights and runs the whole step on the same inputs, exchanging
// tokens with the others at each MoE layer. An MLIR, ONNX or checkpoint
// model is sharded here (moe-expert-parallel, with --placement, --redundant
// and --routing-profile); a .so from `moe-compile --ep N` has its placement
// compiled in and must be run with the same --ep. --backend local (the
// default) runs the ranks as threads of this process; --backend mpi runs
// one rank per process of an MPI job (mpirun -np N moe-run ... --ep N
// --backend mpi). Rank 0 writes the outputs and prints; any rank's failure
// ends every rank (one line on stderr, exit status 1, no output files).
//
// --record-routing FILE.json writes the experts every token-choice router
// chose in the runs (prefill and decode steps; not the --repeat timed
// runs), per MoE layer, as a routing profile (Runtime/Placement.h): the
// input of moe-plan and of --placement balanced. A library must have been
// compiled with moe-compile --expose-routing.
//
//===----------------------------------------------------------------------===//

#include "../CompileFlags.h"
#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Import/HF/Importer.h"
#include "moe-mlir/Import/ONNX/Importer.h"
#include "moe-mlir/InitAll.h"
#include "moe-mlir/Runtime/AllToAll.h"
#include "moe-mlir/Runtime/ExpertParallel.h"
#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/LanguageModel.h"
#include "moe-mlir/Runtime/Model.h"
#include "moe-mlir/Runtime/Npy.h"
#include "moe-mlir/Runtime/Placement.h"
#include "moe-mlir/Runtime/SafeTensors.h"
#include "moe-mlir/Runtime/ThreadPool.h"
#include "moe-mlir/Runtime/Weights.h"
#include "moe-mlir/Support/FirstError.h"
#include "moe-mlir/Support/Progress.h"
#include "moe-mlir/Support/PassStatistics.h"

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
#include <climits>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <set>
#include <sys/stat.h>
#include <thread>

using namespace mlir;
namespace cl = llvm::cl;

using moe_mlir::flags::toolOptions;

static cl::opt<std::string>
    modelPath(cl::Positional,
              cl::desc("<model.so | model.mlir | checkpoint directory>"),
              cl::cat(toolOptions()));
static cl::opt<std::string>
    hfDir("hf",
          cl::desc("A Hugging Face checkpoint directory to import and "
                   "run (instead of MODEL)"),
          cl::value_desc("DIR"), cl::cat(toolOptions()));
static cl::opt<std::string>
    onnxFile("onnx",
             cl::desc("An ONNX model to import and run (instead of "
                      "MODEL)"),
             cl::value_desc("FILE.onnx"), cl::cat(toolOptions()));
static cl::opt<std::string>
    tokensOpt("tokens",
              cl::desc("Comma-separated prompt token ids (language models)"),
              cl::value_desc("ID,ID,..."), cl::cat(toolOptions()));
static cl::opt<std::string>
    logitsOut("logits-out",
              cl::desc("With --tokens: write the prompt's logits [S, V] "
                       "(float32) to this .npy file"),
              cl::value_desc("FILE.npy"), cl::cat(toolOptions()));
static cl::opt<std::string> generateLogitsOut(
    "generate-logits-out",
    cl::desc("With --generate: write the logits row each generated token "
             "was chosen from, [N, V] float32, to this .npy file"),
    cl::value_desc("FILE.npy"), cl::cat(toolOptions()));
static cl::opt<int> generateCount(
    "generate",
    cl::desc("With --tokens: generate N tokens greedily and print their ids"),
    cl::value_desc("N"), cl::init(-1), cl::cat(toolOptions()));
static cl::list<std::string>
    inputs("input", cl::desc("NAME=FILE.npy: the value of input NAME"),
           cl::value_desc("NAME=FILE"), cl::cat(toolOptions()));
static cl::list<std::string> weightFiles(
    "weights",
    cl::desc("A safetensors file, sharded index or checkpoint directory: "
             "inputs not given with --input are taken from it by name, "
             "memory-mapped without a copy"),
    cl::value_desc("PATH"), cl::cat(toolOptions()));
static cl::opt<std::string>
    outputDir("output-dir", cl::desc("Directory for NAME.npy results"),
              cl::value_desc("DIR"), cl::cat(toolOptions()));
static cl::opt<std::string>
    entryName("entry",
              cl::desc("MLIR only: the function to run (default: the "
                       "only public function, or 'main')"),
              cl::cat(toolOptions()));
static cl::opt<std::string> bf16Dot(
    "bf16-dot",
    cl::desc("MLIR, checkpoint and ONNX inputs: bf16 weights use AVX512-BF16 "
             "dot products on bf16-rounded activations: auto (where the host "
             "has avx512bf16, default), on or off (exact f32 products)"),
    cl::init("auto"), cl::cat(toolOptions()));
static cl::opt<unsigned> numThreadsOpt(
    "num-threads",
    cl::desc("Threads of the model's pool (default: MOE_NUM_THREADS, "
             "else all hardware threads)"),
    cl::init(0), cl::cat(toolOptions()));
static cl::opt<unsigned>
    repeat("repeat",
           cl::desc("Run N timed times after a warm-up; median time to "
                    "stderr (with --generate: N more generations, median "
                    "prefill and decode times)"),
           cl::init(0), cl::cat(toolOptions()));

static cl::opt<int>
    epRanks("ep",
            cl::desc("Run the model as an expert-parallel group of N ranks "
                     "(default 1: no expert parallelism)"),
            cl::value_desc("N"), cl::init(1), cl::cat(toolOptions()));
static cl::opt<std::string>
    epBackend("backend",
              cl::desc("With --ep: how the ranks exchange tokens: local "
                       "(threads of this process, default) or mpi (one "
                       "rank per MPI process)"),
              cl::value_desc("local|mpi|nccl"), cl::init("local"),
              cl::cat(toolOptions()));
static cl::opt<std::string> recordRouting(
    "record-routing",
    cl::desc("Write the experts every router chose, per layer, as a routing "
             "profile (moe-plan --profile, --placement balanced): MLIR, "
             "checkpoint and ONNX inputs, or a library compiled with "
             "moe-compile --expose-routing"),
    cl::value_desc("FILE.json"), cl::cat(toolOptions()));

/// The MPI group of this process (--backend mpi): a failure leaves it, so
/// the peers fail promptly instead of waiting for their timeout.
static MoeA2A *mpiGroup = nullptr;

[[noreturn]] static void fail(const llvm::Twine &message) {
  std::string text = message.str();
  if (mpiGroup) {
    moeA2AAbort(mpiGroup, text.c_str());
    // Name the rank (the expert-parallel errors name it already).
    if (!llvm::StringRef(text).starts_with("expert parallel rank "))
      text = "rank " + std::to_string(moeA2ARank(mpiGroup)) + ": " + text;
  }
  // One write: the ranks of an MPI job share stderr.
  llvm::errs() << "moe-run: " + text + "\n";
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
  if (!recordRouting.empty() && failed(moe_mlir::exposeRouting(*module)))
    fail(origin + ": " + firstError.message("could not expose its routing"));
  if (epRanks > 1) {
    progress.update("sharding for expert parallelism", 0, 0, true);
    if (failed(moe_mlir::shardExpertParallel(
            *module, moe_mlir::flags::expertParallel(epRanks))))
      fail(origin + ": " +
           firstError.message("could not shard it for expert parallelism "
                              "over " +
                              std::to_string(epRanks) + " ranks"));
  }
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
  moe_mlir::flags::applyOptimization(lowering);
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
  if (auto setHooks = r.engine->lookup("moe_model_set_expert_parallel"))
    reinterpret_cast<void (*)(const MoeEpHooks *)> (*setHooks)(
        moe_rt::expertParallelHooks());
  else
    llvm::consumeError(setHooks.takeError());
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

namespace {
/// --record-routing: the outputs routing.<layer>.e<E> ([T, k] expert ids)
/// of every recorded run, accumulated into a routing profile. Every rank
/// routes the same tokens; rank 0 (or the one plain run) records.
struct RoutingRecorder {
  struct Layer {
    int output = -1;
    int64_t experts = 0;
  };
  std::vector<Layer> layers;
  moe_rt::RoutingProfile profile;
  bool paused = false; // --repeat's timed runs repeat the first

  /// Finds the routing outputs of `info`; false when it has none.
  bool attach(const moe_rt::ModelInfo &info) {
    for (size_t o = 0; o < info.outputs.size(); ++o) {
      llvm::StringRef name(info.outputs[o].name);
      if (!name.consume_front("routing."))
        continue;
      auto [index, experts] = name.split(".e");
      unsigned layer;
      int64_t e;
      if (index.getAsInteger(10, layer) || experts.getAsInteger(10, e) ||
          e < 1 || info.outputs[o].shape.size() != 2)
        continue;
      if (layers.size() <= layer)
        layers.resize(layer + 1);
      layers[layer] = {static_cast<int>(o), e};
    }
    for (const Layer &l : layers)
      if (l.output < 0)
        return false;
    return !layers.empty();
  }

  moe_rt::Status record(const std::vector<moe_rt::Array> &outputs) {
    for (size_t l = 0; l < layers.size(); ++l) {
      const moe_rt::Array &ids = outputs[layers[l].output];
      int64_t tokens = ids.shape[0], k = ids.shape[1];
      if (profile.layers.empty()) {
        profile.numExperts = static_cast<int>(layers[0].experts);
        profile.topK = static_cast<int>(k);
        profile.layers.resize(layers.size());
        for (size_t i = 0; i < layers.size(); ++i) {
          profile.layers[i].layer = static_cast<int>(i);
          profile.layers[i].expertCounts.assign(profile.numExperts, 0);
        }
      }
      if (layers[l].experts != profile.numExperts || k != profile.topK)
        return moe_rt::Status::error(
            "--record-routing: MoE layer " + std::to_string(l) + " has " +
            std::to_string(layers[l].experts) + " experts and k = " +
            std::to_string(k) + ", layer 0 " +
            std::to_string(profile.numExperts) + " and k = " +
            std::to_string(profile.topK) +
            "; a routing profile has one expert count and k");
      moe_rt::RoutingLayer &layer = profile.layers[l];
      const int32_t *data = reinterpret_cast<const int32_t *>(ids.data.data());
      for (int64_t i = 0; i < tokens * k; ++i) {
        // Dropped assignments (-1, capacity) count for no expert; the
        // assignment lists keep them.
        if (data[i] >= 0 && data[i] < profile.numExperts)
          ++layer.expertCounts[data[i]];
        layer.assignments.push_back(data[i]);
      }
      if (l == 0)
        profile.tokens += tokens;
    }
    return moe_rt::Status::success();
  }
};
RoutingRecorder *routingRecorder = nullptr;
} // namespace

static moe_rt::Status runModel(Runnable &model,
                               const std::vector<moe_rt::TensorView> &views,
                               std::vector<moe_rt::Array> &outputs) {
  moe_rt::Status st =
      model.library
          ? model.library->run(views, outputs)
          : moe_rt::invoke(model.invoke, model.info, views, outputs);
  if (!st || !routingRecorder || routingRecorder->paused)
    return st;
  moe_rt::ExpertParallelRank *rank = moe_rt::ExpertParallelRank::current();
  if (rank && rank->rank() != 0)
    return st;
  return routingRecorder->record(outputs);
}

namespace {
/// What one rank runs on: the inputs of a plain run, or a language-model
/// session (which binds its own).
struct RankInputs {
  std::vector<moe_rt::TensorView> views;
  std::unique_ptr<moe_rt::LanguageModel> lm;
};

/// What one rank's run produced (rank 0's is written).
struct RunResult {
  std::vector<moe_rt::Array> outputs;
  std::vector<double> ms; // --repeat
  moe_rt::Array logits;
  std::vector<int64_t> generated;
  moe_rt::GenerationStats stats;
  moe_rt::Array stepLogits;
};
} // namespace

/// Binds the inputs of each rank in `ranks` (EP ranks `eps`, null without
/// expert parallelism): --input files, loaded once into `owned` and shared,
/// else the checkpoints; an input that holds expert slots takes each rank's
/// own experts. Language models bind through their session, one per rank,
/// created under the rank's scope.
static std::vector<RankInputs> bindInputs(
    Runnable &model, moe_rt::WeightSet &weights,
    const llvm::StringMap<std::string> &given, const std::vector<int> &ranks,
    const std::vector<moe_rt::ExpertParallelRank *> &eps, bool languageModel,
    std::vector<std::unique_ptr<moe_rt::Array>> &owned,
    moe_mlir::Progress &progress) {
  const moe_rt::ModelInfo &info = model.info;
  std::vector<RankInputs> out(ranks.size());
  if (languageModel) {
    for (size_t n = 0; n < ranks.size(); ++n) {
      std::unique_ptr<moe_rt::ExpertParallelRank::Scope> scope;
      if (eps[n])
        scope = std::make_unique<moe_rt::ExpertParallelRank::Scope>(*eps[n]);
      moe_rt::RunFn run =
          [&model](const std::vector<moe_rt::TensorView> &inputs,
                   std::vector<moe_rt::Array> &outputs) {
            return runModel(model, inputs, outputs);
          };
      std::string what = ranks.size() > 1 ? "binding weights of rank " +
                                                std::to_string(ranks[n])
                                          : "binding weights";
      moe_rt::Status st = moe_rt::LanguageModel::create(
          info, run, weights, out[n].lm, [&](size_t done, size_t total) {
            progress.update(what, done, total);
          });
      progress.clear();
      if (!st)
        fail(st.message);
    }
    return out;
  }

  std::set<std::string> used;
  for (RankInputs &r : out)
    r.views.resize(info.inputs.size());
  for (size_t i = 0; i < info.inputs.size(); ++i) {
    const moe_rt::TensorSpec &spec = info.inputs[i];
    auto it = given.find(spec.name);
    if (it != given.end()) {
      if (!spec.slotExperts.empty())
        fail("--input " + spec.name + ": input '" + spec.name +
             "' holds each rank's own expert slots; it is bound from the "
             "weight checkpoint");
      owned.push_back(
          std::make_unique<moe_rt::Array>(loadInput(spec, it->second)));
      for (RankInputs &r : out)
        r.views[i] = moe_rt::TensorView::of(*owned.back());
      used.insert(spec.name);
      continue;
    }
    if (!weights.provides(spec))
      fail("missing --input " + spec.name + "=FILE.npy (input " +
           llvm::Twine(i) + " of @" + info.entry + ": " +
           moe_rt::dtypeName(spec.dtype) + " " +
           moe_rt::shapeToString(spec.shape) + ")" +
           (weights.empty() ? "" : "; no tensor of that name in --weights"));
    for (size_t n = 0; n < ranks.size(); ++n) {
      moe_rt::Status st =
          spec.slotExperts.empty()
              ? weights.bind(spec, out[n].views[i])
              : weights.bindSlots(
                    spec, moe_rt::WeightSet::slotsOfRank(spec, ranks[n]),
                    out[n].views[i]);
      if (!st)
        fail(ranks.size() > 1
                 ? "rank " + llvm::Twine(ranks[n]) + ": " + st.message
                 : llvm::Twine(st.message));
    }
  }
  for (auto &kv : given)
    if (!used.count(kv.getKey().str()))
      fail("--input " + kv.getKey() + ": @" + info.entry +
           " has no input of that name");
  return out;
}

/// The median of `v` (not empty).
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// One rank's run: the model once (then --repeat timed runs), or the
/// language-model prompt (logits, generation).
static moe_rt::Status runJob(Runnable &model, RankInputs &in,
                             const std::vector<int64_t> &prompt,
                             RunResult &result) {
  if (in.lm) {
    if (!logitsOut.empty())
      if (moe_rt::Status st = in.lm->forward(prompt, result.logits); !st)
        return st;
    if (generateCount >= 0) {
      if (moe_rt::Status st = in.lm->generate(
              prompt, generateCount, result.generated, &result.stats,
              generateLogitsOut.empty() ? nullptr : &result.stepLogits);
          !st)
        return st;
      // With --repeat N the first generation was the warm-up; N more give
      // the median prefill and decode times (the tokens are the first's).
      if (routingRecorder)
        routingRecorder->paused = true;
      std::vector<double> prefill, decode;
      for (unsigned r = 0; r < repeat; ++r) {
        std::vector<int64_t> again;
        moe_rt::GenerationStats stats;
        if (moe_rt::Status st =
                in.lm->generate(prompt, generateCount, again, &stats);
            !st)
          return st;
        prefill.push_back(stats.prefillMs);
        decode.push_back(stats.decodeMs);
      }
      if (repeat > 0) {
        result.stats.prefillMs = median(prefill);
        result.stats.decodeMs = median(decode);
      }
    }
    return moe_rt::Status::success();
  }
  if (moe_rt::Status st = runModel(model, in.views, result.outputs); !st)
    return st;
  if (routingRecorder)
    routingRecorder->paused = true;
  for (unsigned r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (moe_rt::Status st = runModel(model, in.views, result.outputs); !st)
      return st;
    auto t1 = std::chrono::steady_clock::now();
    result.ms.push_back(
        std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return moe_rt::Status::success();
}

/// Writes and prints what the run produced (rank 0's result).
static void writeResults(const moe_rt::ModelInfo &info, RunResult &result,
                         bool languageModel, size_t promptTokens) {
  if (languageModel) {
    if (!logitsOut.empty())
      if (moe_rt::Status s = moe_rt::writeNpy(logitsOut, result.logits); !s)
        fail(s.message);
    if (generateCount < 0)
      return;
    if (!generateLogitsOut.empty())
      if (moe_rt::Status s =
              moe_rt::writeNpy(generateLogitsOut, result.stepLogits);
          !s)
        fail(s.message);
    std::string line;
    for (size_t i = 0; i < result.generated.size(); ++i)
      line += (i ? "," : "") + std::to_string(result.generated[i]);
    llvm::outs() << line << "\n";
    llvm::outs().flush();
    const moe_rt::GenerationStats &stats = result.stats;
    double tokensPerSecond =
        stats.decodeSteps > 0 ? stats.decodeSteps * 1000.0 / stats.decodeMs
                              : 0.0;
    llvm::errs() << llvm::format(
        "moe-run: prefill %zu tokens %.2f ms; decode %lld tokens %.2f ms "
        "(%.1f tokens/s)%s\n",
        promptTokens, stats.prefillMs,
        static_cast<long long>(stats.decodeSteps), stats.decodeMs,
        tokensPerSecond,
        repeat > 0 ? (", medians of " + std::to_string(repeat) +
                      " generations after a warm-up")
                         .c_str()
                   : "");
    return;
  }
  if (repeat > 0) {
    llvm::errs() << "moe-run: @" << info.entry << " median "
                 << llvm::format("%.4f", median(result.ms)) << " ms over "
                 << repeat
                 << " runs\n";
  }
  if (!outputDir.empty())
    for (size_t i = 0; i < result.outputs.size(); ++i) {
      std::string path =
          outputDir + "/" + fileNameFor(info.outputs[i].name) + ".npy";
      if (moe_rt::Status st =
              moe_rt::writeNpy(path, toWritable(result.outputs[i]));
          !st)
        fail(st.message);
    }
}

/// Checks the expert-parallel options that need no model; with --backend
/// mpi, joins the MPI job (before compiling: a wrong -np fails at once).
static void checkExpertParallelOptions() {
  bool placementGiven = moe_mlir::flags::placementGiven();
  if (epRanks < 1)
    fail("--ep must be at least 1, got " + llvm::Twine(epRanks));
  if (epBackend != "local" && epBackend != "mpi" && epBackend != "nccl")
    fail("--backend must be local, mpi or nccl, got '" + epBackend + "'");
  if (epBackend == "nccl")
    fail("--backend nccl needs a GPU-compiled model; CPU models use local "
         "or mpi");
  const std::string &placement = moe_mlir::flags::placement;
  int redundant = moe_mlir::flags::redundant;
  if (placement != "contiguous" && placement != "round-robin" &&
      placement != "balanced")
    fail("--placement must be contiguous, round-robin or balanced, got '" +
         placement + "'");
  if (redundant < 0)
    fail("--redundant must not be negative, got " + llvm::Twine(redundant));
  if (epRanks == 1 && placementGiven)
    fail("--placement, --redundant and --routing-profile need --ep N (N > 1)");
  if (epRanks == 1 && epBackend == "mpi")
    fail("--backend mpi needs --ep N (N > 1), the number of MPI processes");
  if (epBackend != "mpi" || epRanks == 1)
    return;
  MoeA2A *group = nullptr;
  if (moeA2ACreateMpi(0, &group) != MOE_A2A_OK)
    fail(llvm::Twine("--backend mpi: ") + moeA2AError(nullptr));
  mpiGroup = group;
  if (moeA2ASize(group) != epRanks)
    fail("--ep " + llvm::Twine(epRanks) + " does not match the " +
         llvm::Twine(moeA2ASize(group)) + " processes of the MPI job (run " +
         "mpirun -np " + llvm::Twine(epRanks) + ")");
}

/// The model's expert parallelism must be what --ep asks for.
static void checkModelParallelism(const Runnable &model,
                                  const std::string &path) {
  int compiled = model.info.expertParallel;
  bool placementGiven = moe_mlir::flags::placementGiven();
  if (model.library) {
    if (compiled != epRanks)
      fail(compiled == 1
               ? path +
                     " was compiled without expert parallelism; run it "
                     "without --ep, or compile it with moe-compile --ep " +
                     std::to_string(epRanks)
               : path + " was compiled for --ep " + std::to_string(compiled) +
                     "; run it with --ep " + std::to_string(compiled));
    if (placementGiven)
      fail("--placement, --redundant and --routing-profile shard models "
           "compiled here; " +
           path +
           " has its expert placement compiled "
           "in (moe-compile --ep)");
    return;
  }
  if (compiled != epRanks)
    fail(path + ": the model is for expert parallelism over " +
         std::to_string(compiled) + " ranks, --ep asks for " +
         std::to_string(epRanks));
}

int main(int argc, char **argv) {
  moe_mlir::handlePassStatisticsFlag(argc, argv);
  llvm::InitLLVM init(argc, argv);
  moe_mlir::flags::registerPassManagerFlags();
  moe_mlir::flags::showToolOptions(
      {"mlir-timing", "mlir-print-ir-after-all", "mlir-print-ir-before-all"});
  cl::ParseCommandLineOptions(argc, argv, "moe-mlir model runner\n");
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  registerAllPasses();
  moe_mlir::registerAllPasses();

  if (numThreadsOpt > 0)
    moe_rt::setNumThreads(static_cast<int>(numThreadsOpt));
  // A model call allocates its temporaries and frees them on return. Keep
  // freed memory in the heap instead of returning it to the system, so that
  // the next call (the next decode step) does not fault its pages in again
  // (5% of a 512-token MoE layer). Weights are memory-mapped, not malloc'ed.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
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
  checkExpertParallelOptions();

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
  checkModelParallelism(model, path);
  RoutingRecorder recorder;
  if (!recordRouting.empty()) {
    if (!recorder.attach(info))
      fail(path + ": the model returns no routing (routing.<layer>.e<E> "
                  "outputs) to record" +
           (model.library ? "; compile it with moe-compile --expose-routing"
                          : "; it has no token-choice MoE router"));
    routingRecorder = &recorder;
  }

  // Weight checkpoints, memory-mapped: --weights, else the model's own.
  moe_rt::WeightSet weights;
  for (const std::string &w : weightFiles)
    if (moe_rt::Status st = weights.addCheckpoint(w); !st)
      fail(st.message);
  if (weightFiles.empty() && !info.weightsPath.empty())
    if (moe_rt::Status st = weights.addCheckpoint(info.weightsPath); !st)
      fail(st.message);

  // The ranks this process runs: all N as threads (local), its own (MPI),
  // or the one plain run.
  int ranks = epRanks;
  std::vector<int> mine;
  std::vector<MoeA2A *> handles;
  std::vector<std::unique_ptr<moe_rt::ExpertParallelRank>> eps;
  if (ranks > 1 && mpiGroup) {
    mine.push_back(moeA2ARank(mpiGroup));
    eps.push_back(std::make_unique<moe_rt::ExpertParallelRank>(mpiGroup));
  } else if (ranks > 1) {
    handles.resize(ranks);
    if (moeA2ACreateLocalGroup(ranks, 0, handles.data()) != MOE_A2A_OK)
      fail(llvm::Twine("--ep ") + llvm::Twine(ranks) + ": " +
           moeA2AError(nullptr));
    for (int r = 0; r < ranks; ++r) {
      mine.push_back(r);
      eps.push_back(std::make_unique<moe_rt::ExpertParallelRank>(handles[r]));
    }
  } else {
    mine.push_back(0);
    eps.push_back(nullptr);
  }
  std::vector<moe_rt::ExpertParallelRank *> epPtrs;
  for (auto &ep : eps)
    epPtrs.push_back(ep.get());

  std::vector<std::unique_ptr<moe_rt::Array>> owned;
  std::vector<RankInputs> rankInputs = bindInputs(
      model, weights, given, mine, epPtrs, languageModel, owned, progress);
  if (languageModel) {
    int64_t vocab = rankInputs.front().lm->vocabSize();
    for (size_t i = 0; i < prompt.size(); ++i)
      if (prompt[i] >= vocab)
        fail("--tokens: token id " + llvm::Twine(prompt[i]) + " (position " +
             llvm::Twine(i) + ") is outside the vocabulary [0, " +
             llvm::Twine(vocab) + ")");
  }

  std::vector<RunResult> results(mine.size());
  if (!eps.front()) {
    if (moe_rt::Status st = runJob(model, rankInputs[0], prompt, results[0]);
        !st)
      fail(st.message);
  } else {
    // Each rank runs under its scope; a failure leaves the group, so the
    // other ranks fail promptly too.
    auto runRank = [&](size_t n) {
      moe_rt::ExpertParallelRank::Scope scope(*eps[n]);
      moe_rt::Status st = runJob(model, rankInputs[n], prompt, results[n]);
      if (!st)
        eps[n]->fail(st.message);
    };
    std::vector<std::thread> threads;
    for (size_t n = 1; n < mine.size(); ++n)
      threads.emplace_back(runRank, n);
    runRank(0);
    for (std::thread &t : threads)
      t.join();
    // The first failure is the cause; the later ones say that a peer left.
    moe_rt::ExpertParallelRank *first = nullptr;
    for (auto &ep : eps)
      if (ep->failed() &&
          (!first || ep->failureOrder() < first->failureOrder()))
        first = ep.get();
    if (first)
      fail(first->error());
    if (mpiGroup) {
      // Every rank of the job must have succeeded before rank 0 writes: a
      // last exchange of nothing fails if a peer left.
      std::vector<int64_t> none(ranks, 0), counts(ranks, 0);
      const void *recv = nullptr;
      if (moeA2AExchange(mpiGroup, nullptr, none.data(), 8, &recv,
                         counts.data()) != MOE_A2A_OK) {
        std::string why = moeA2AError(mpiGroup);
        std::string self = "rank " + std::to_string(mine.front()) + ": ";
        if (llvm::StringRef(why).starts_with(self))
          why.erase(0, self.size());
        eps.front()->fail("after the run: " + why);
        fail(eps.front()->error());
      }
    }
    eps.clear();
    for (MoeA2A *h : handles)
      moeA2ADestroy(h);
  }
  if (mine.front() == 0) {
    writeResults(info, results.front(), languageModel, prompt.size());
    if (routingRecorder) {
      std::string text =
          moe_rt::serializeJson(moe_rt::routingProfileToJson(recorder.profile));
      std::error_code ec;
      llvm::raw_fd_ostream out(recordRouting, ec);
      if (ec)
        fail("--record-routing: cannot write " + recordRouting + ": " +
             ec.message());
      out << text << "\n";
    }
  }
  if (mpiGroup)
    moeA2ADestroy(mpiGroup);
  return 0;
}
