//===- moe-run.cpp - run a model on NumPy inputs --------------------------===//
//
// Part of moe-mlir.
//
// moe-run MODEL --input NAME=FILE.npy ... [--output-dir DIR] [--repeat N]
//
// MODEL is either a shared library compiled by moe-compile or an MLIR file,
// Inputs that no --input names are looked up by name in the --weights
// checkpoints (safetensors), memory-mapped and passed without a copy when
// their dtype is the model's (converted with a copy between f32/f16/bf16).
// which is compiled for the host CPU (moe-cpu-pipeline) and JIT-run. Inputs
// are bound by name (the `moe.name` of each argument, else argN); every
// result is written as DIR/NAME.npy. bf16 and f16 tensors are read from
// float32 (or float16) .npy files, rounded to nearest even, and written as
// float32. With --repeat N the model runs once to warm up, then N times, and
// the median time per run goes to stderr. Every error is one line on stderr
// and exit status 1; no output file is written unless the run succeeded.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/InitAll.h"
#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/Model.h"
#include "moe-mlir/Runtime/Npy.h"
#include "moe-mlir/Runtime/SafeTensors.h"
#include "moe-mlir/Runtime/ThreadPool.h"

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
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sys/stat.h>

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string> modelPath(cl::Positional,
                                      cl::desc("<model.so | model.mlir>"),
                                      cl::Required);
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

/// `array` converted to `to` when both are float types (f32, f16, bf16);
/// unchanged otherwise (the shape/dtype check then reports the mismatch).
static moe_rt::Array convertFloat(const moe_rt::Array &array,
                                  moe_rt::DType to) {
  using moe_rt::DType;
  auto isFloat = [](DType d) {
    return d == DType::F32 || d == DType::F16 || d == DType::BF16;
  };
  if (array.dtype == to || !isFloat(array.dtype) || !isFloat(to))
    return array;
  int64_t n = array.numElements();
  moe_rt::Array out;
  out.dtype = to;
  out.shape = array.shape;
  out.data.resize(static_cast<size_t>(n) * moe_rt::dtypeSize(to));
  for (int64_t i = 0; i < n; ++i) {
    float v;
    if (array.dtype == DType::F32) {
      std::memcpy(&v, array.data.data() + 4 * i, 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, array.data.data() + 2 * i, 2);
      v = array.dtype == DType::F16 ? moe_rt::f16ToFloat(bits)
                                    : moe_rt::bf16ToFloat(bits);
    }
    if (to == DType::F32) {
      std::memcpy(out.data.data() + 4 * i, &v, 4);
    } else {
      uint16_t bits = to == DType::BF16 ? moe_rt::floatToBF16(v)
                                        : moe_rt::floatToF16(v);
      std::memcpy(out.data.data() + 2 * i, &bits, 2);
    }
  }
  return out;
}

/// Reads the .npy for `spec`, converting float32/float16 data to bf16/f16
/// when the model takes those.
static moe_rt::Array loadInput(const moe_rt::TensorSpec &spec,
                               const std::string &path) {
  moe_rt::Array array;
  if (moe_rt::Status st = moe_rt::readNpy(path, array); !st)
    fail(st.message);
  array = convertFloat(array, spec.dtype);
  moe_rt::Status st =
      moe_rt::checkInput(spec, moe_rt::TensorView::of(array));
  if (!st)
    fail(st.message + " (" + path + ")");
  return array;
}

/// bf16/f16 results are written as float32 .npy files.
static moe_rt::Array toWritable(moe_rt::Array array) {
  using moe_rt::DType;
  if (array.dtype != DType::BF16 && array.dtype != DType::F16)
    return array;
  int64_t n = array.numElements();
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, array.data.data() + 2 * i, 2);
    float v = array.dtype == DType::BF16 ? moe_rt::bf16ToFloat(bits)
                                         : moe_rt::f16ToFloat(bits);
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

static Runnable compileMlir(const std::string &path) {
  Runnable r;
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  r.context = std::make_unique<MLIRContext>(registry);

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
  FailureOr<moe_rt::ModelInfo> info =
      moe_mlir::prepareEntry(*module, entryName);
  if (failed(info))
    fail("no entry point to run in " + path);
  r.info = *info;
  if (failed(moe_mlir::lowerForCpu(*module)) ||
      failed(moe_mlir::addModelAbi(*module, r.info)))
    fail("could not compile " + path + " for the CPU");

  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(3, 0, nullptr);
  ExecutionEngineOptions options;
  options.transformer = optimize;
  auto engine = ExecutionEngine::create(*module, options);
  if (!engine)
    fail("JIT compilation of " + path + " failed: " +
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
  return r;
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

  Runnable model = llvm::StringRef(modelPath).ends_with(".so")
                       ? loadLibrary(modelPath)
                       : compileMlir(modelPath);
  const moe_rt::ModelInfo &info = model.info;

  // Weight checkpoints, memory-mapped.
  std::vector<std::unique_ptr<moe_rt::SafeTensorsIndex>> checkpoints;
  for (const std::string &path : weightFiles) {
    std::unique_ptr<moe_rt::SafeTensorsIndex> ckpt;
    if (moe_rt::Status st = moe_rt::openSafeTensorsCheckpoint(path, ckpt); !st)
      fail(st.message);
    checkpoints.push_back(std::move(ckpt));
  }

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
    const moe_rt::TensorInfo *tensor = nullptr;
    const moe_rt::SafeTensorsFile *file = nullptr;
    for (auto &ckpt : checkpoints)
      if ((tensor = ckpt->find(spec.name, &file)))
        break;
    if (!tensor)
      fail("missing --input " + spec.name + "=FILE.npy (input " +
           llvm::Twine(i) + " of @" + info.entry + ": " +
           moe_rt::dtypeName(spec.dtype) + " " +
           moe_rt::shapeToString(spec.shape) + ")" +
           (checkpoints.empty() ? "" : "; no tensor of that name in --weights"));
    moe_rt::DType dtype;
    if (!tensor->runtimeDType(dtype))
      fail(file->path() + ": tensor '" + spec.name + "' has dtype " +
           moe_rt::safeTensorsDTypeName(tensor->dtype) +
           ", which the model cannot take");
    moe_rt::TensorView view{dtype, tensor->shape, tensor->data};
    if (dtype == spec.dtype && tensor->isAligned()) {
      if (moe_rt::Status st = moe_rt::checkInput(spec, view); !st)
        fail(file->path() + ": " + st.message);
      views.push_back(view);
      continue;
    }
    // A copy: another float type, or data not aligned to its element size.
    auto copy = std::make_unique<moe_rt::Array>();
    copy->dtype = dtype;
    copy->shape = tensor->shape;
    copy->data.assign(static_cast<const uint8_t *>(tensor->data),
                      static_cast<const uint8_t *>(tensor->data) +
                          tensor->byteSize());
    moe_rt::Array converted = convertFloat(*copy, spec.dtype);
    *copy = std::move(converted);
    if (moe_rt::Status st =
            moe_rt::checkInput(spec, moe_rt::TensorView::of(*copy));
        !st)
      fail(file->path() + ": " + st.message);
    owned.push_back(std::move(copy));
    views.push_back(moe_rt::TensorView::of(*owned.back()));
  }
  for (auto &kv : given)
    if (!used.count(kv.getKey().str()))
      fail("--input " + kv.getKey() + ": @" + info.entry +
           " has no input of that name");

  moe_rt::InvokeFn fn =
      model.library ? nullptr : model.invoke;
  std::vector<moe_rt::Array> outputs;
  auto runOnce = [&] {
    moe_rt::Status st = model.library ? model.library->run(views, outputs)
                                      : moe_rt::invoke(fn, info, views, outputs);
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
      std::string path = outputDir + "/" + info.outputs[i].name + ".npy";
      if (moe_rt::Status st = moe_rt::writeNpy(path, toWritable(outputs[i]));
          !st)
        fail(st.message);
    }
  return 0;
}
