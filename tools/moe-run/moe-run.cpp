//===- moe-run.cpp - run an MLIR function on NumPy inputs -----------------===//
//
// Part of moe-mlir.
//
// moe-run FILE.mlir --input NAME=FILE.npy ... --output-dir DIR [--repeat N]
//
// Compiles FILE.mlir for the host CPU (moe-cpu-pipeline), JIT-runs its entry
// function on the inputs and writes every result as DIR/NAME.npy. Argument
// and result names come from `moe.name` attributes (else argN / resultN).
// bf16 and f16 tensors are read from and written as float32 .npy files
// (values rounded to nearest even when read). With --repeat N the function
// runs once to warm up, then N times, and the median time per run goes to
// stderr. Every error is one line on stderr and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/InitAll.h"
#include "moe-mlir/Pipelines/Pipelines.h"
#include "moe-mlir/Runtime/Npy.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sys/stat.h>

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string> inputFile(cl::Positional,
                                      cl::desc("<model.mlir>"),
                                      cl::Required);
static cl::list<std::string>
    inputs("input", cl::desc("NAME=FILE.npy: the value of argument NAME"),
           cl::value_desc("NAME=FILE"));
static cl::opt<std::string> outputDir("output-dir",
                                      cl::desc("Directory for NAME.npy results"),
                                      cl::value_desc("DIR"));
static cl::opt<std::string>
    entryName("entry", cl::desc("Function to run (default: the only public "
                                "function, or 'main')"));
static cl::opt<unsigned>
    repeat("repeat",
           cl::desc("Run N timed times after a warm-up; median time to stderr"),
           cl::init(0));

[[noreturn]] static void fail(const llvm::Twine &message) {
  llvm::errs() << "moe-run: " << message << "\n";
  std::exit(1);
}

static std::string shapeString(llvm::ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += shape[i] < 0 ? std::string("?") : std::to_string(shape[i]);
  }
  return s + "]";
}

static std::string typeString(Type type) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << type;
  return s;
}

static std::string nameOf(func::FuncOp fn, unsigned i, bool result) {
  auto attr = result ? fn.getResultAttrOfType<StringAttr>(i, "moe.name")
                     : fn.getArgAttrOfType<StringAttr>(i, "moe.name");
  if (attr)
    return attr.str();
  return (result ? "result" : "arg") + std::to_string(i);
}

namespace {
/// A memref descriptor as the C interface lays it out: two pointers, an
/// offset, then `rank` sizes and `rank` strides, all 8 bytes wide.
struct Descriptor {
  std::vector<int64_t> words;
  static size_t wordsFor(int64_t rank) { return 3 + 2 * rank; }
};

struct Buffer {
  Type elementType;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes; // owned storage of an input
};
} // namespace

/// The element size of a supported tensor element type, or 0.
static size_t elementBytes(Type t) {
  if (t.isF32() || t.isInteger(32))
    return 4;
  if (t.isF16() || t.isBF16())
    return 2;
  if (t.isInteger(64))
    return 8;
  if (t.isInteger(1) || t.isInteger(8))
    return 1;
  return 0;
}

/// Converts a .npy array to the bytes of a tensor of `type`.
static Buffer toBuffer(const std::string &name, const std::string &path,
                       const moe_rt::Array &array, RankedTensorType type) {
  Type et = type.getElementType();
  if (array.shape.size() != static_cast<size_t>(type.getRank()))
    fail("input '" + name + "' (" + path + "): expected rank " +
         llvm::Twine(type.getRank()) + " for " + typeString(type) + ", got " +
         shapeString(array.shape));
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (!type.isDynamicDim(d) && type.getDimSize(d) != array.shape[d])
      fail("input '" + name + "' (" + path + "): expected shape " +
           shapeString(type.getShape()) + " (" + typeString(type) + "), got " +
           shapeString(array.shape));
  Buffer buf{et, array.shape, {}};
  int64_t n = array.numElements();
  using moe_rt::DType;
  auto mismatch = [&] {
    fail("input '" + name + "' (" + path + "): dtype " +
         moe_rt::dtypeName(array.dtype) + " does not match " +
         typeString(type));
  };
  if (et.isBF16() || et.isF16()) {
    if (array.dtype != DType::F32 && array.dtype != DType::F16 &&
        array.dtype != DType::BF16)
      mismatch();
    buf.bytes.resize(n * 2);
    auto *out = reinterpret_cast<uint16_t *>(buf.bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      float v;
      if (array.dtype == DType::F32)
        std::memcpy(&v, array.data.data() + 4 * i, 4);
      else {
        uint16_t bits;
        std::memcpy(&bits, array.data.data() + 2 * i, 2);
        v = array.dtype == DType::F16 ? moe_rt::f16ToFloat(bits)
                                      : moe_rt::bf16ToFloat(bits);
      }
      out[i] = et.isBF16() ? moe_rt::floatToBF16(v) : moe_rt::floatToF16(v);
    }
    return buf;
  }
  bool ok = (et.isF32() && array.dtype == DType::F32) ||
            (et.isInteger(32) && array.dtype == DType::I32) ||
            (et.isInteger(64) && array.dtype == DType::I64) ||
            (et.isInteger(1) && array.dtype == DType::Bool) ||
            (et.isInteger(8) && array.dtype == DType::U8);
  if (!ok)
    mismatch();
  buf.bytes = array.data;
  return buf;
}

static Descriptor describe(Buffer &buf) {
  int64_t rank = buf.shape.size();
  Descriptor d;
  d.words.assign(Descriptor::wordsFor(rank), 0);
  auto ptr = reinterpret_cast<int64_t>(buf.bytes.data());
  d.words[0] = ptr;
  d.words[1] = ptr;
  d.words[2] = 0;
  int64_t stride = 1;
  for (int64_t i = rank - 1; i >= 0; --i) {
    d.words[3 + i] = buf.shape[i];
    d.words[3 + rank + i] = stride;
    stride *= buf.shape[i];
  }
  return d;
}

/// Copies a result described at `words` into a .npy array.
static moe_rt::Array readResult(const int64_t *words, RankedTensorType type) {
  int64_t rank = type.getRank();
  Type et = type.getElementType();
  size_t eb = elementBytes(et);
  const auto *base = reinterpret_cast<const uint8_t *>(words[1]);
  int64_t offset = words[2];
  moe_rt::Array out;
  out.shape.assign(words + 3, words + 3 + rank);
  const int64_t *strides = words + 3 + rank;
  int64_t n = 1;
  for (int64_t s : out.shape)
    n *= s;
  bool half = et.isBF16() || et.isF16();
  using moe_rt::DType;
  out.dtype = half || et.isF32() ? DType::F32
              : et.isInteger(32) ? DType::I32
              : et.isInteger(64) ? DType::I64
              : et.isInteger(1)  ? DType::Bool
                                 : DType::U8;
  out.data.resize(n * moe_rt::dtypeSize(out.dtype));
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t at = offset;
    for (int64_t d = 0; d < rank; ++d)
      at += idx[d] * strides[d];
    const uint8_t *src = base + at * eb;
    if (half) {
      uint16_t bits;
      std::memcpy(&bits, src, 2);
      float v = et.isBF16() ? moe_rt::bf16ToFloat(bits)
                            : moe_rt::f16ToFloat(bits);
      std::memcpy(out.data.data() + 4 * i, &v, 4);
    } else {
      std::memcpy(out.data.data() + eb * i, src, eb);
    }
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++idx[d] < out.shape[d])
        break;
      idx[d] = 0;
    }
  }
  return out;
}

static func::FuncOp findEntry(ModuleOp module) {
  if (!entryName.empty()) {
    auto fn = module.lookupSymbol<func::FuncOp>(entryName);
    if (!fn || fn.isDeclaration())
      fail("no function '" + entryName + "' in " + inputFile);
    return fn;
  }
  func::FuncOp only;
  unsigned count = 0;
  for (auto fn : module.getOps<func::FuncOp>())
    if (fn.isPublic() && !fn.isDeclaration()) {
      only = fn;
      ++count;
    }
  if (count == 1)
    return only;
  if (auto main = module.lookupSymbol<func::FuncOp>("main"))
    return main;
  fail(inputFile + " has " + llvm::Twine(count) +
       " public functions: choose one with --entry");
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "moe-mlir model runner\n");
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerAllPasses();
  moe_mlir::registerAllPasses();
  MLIRContext context(registry);

  llvm::SourceMgr sourceMgr;
  std::string error;
  auto file = openInputFile(inputFile, &error);
  if (!file)
    fail(error);
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    fail("could not parse " + inputFile);

  func::FuncOp entry = findEntry(*module);
  std::string fnName = entry.getSymName().str();
  FunctionType fnType = entry.getFunctionType();

  // Inputs by name.
  llvm::StringMap<std::string> given;
  for (const std::string &spec : inputs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      fail("--input expects NAME=FILE.npy, got '" + spec + "'");
    given[spec.substr(0, eq)] = spec.substr(eq + 1);
  }
  std::vector<Buffer> args;
  std::set<std::string> used;
  for (unsigned i = 0; i < fnType.getNumInputs(); ++i) {
    std::string name = nameOf(entry, i, false);
    auto type = llvm::dyn_cast<RankedTensorType>(fnType.getInput(i));
    if (!type || !elementBytes(type.getElementType()))
      fail("argument '" + name + "' of @" + fnName + " has type " +
           typeString(fnType.getInput(i)) +
           ", but only ranked tensors of f32/f16/bf16/i1/i8/i32/i64 are "
           "supported");
    auto it = given.find(name);
    if (it == given.end())
      fail("missing --input " + name + "=FILE.npy (argument " +
           llvm::Twine(i) + " of @" + fnName + ", " + typeString(type) + ")");
    moe_rt::Array array;
    moe_rt::Status st = moe_rt::readNpy(it->second, array);
    if (!st)
      fail(st.message);
    args.push_back(toBuffer(name, it->second, array, type));
    used.insert(name);
  }
  for (auto &kv : given)
    if (!used.count(kv.getKey().str()))
      fail("--input " + kv.getKey() + ": @" + fnName +
           " has no argument of that name");
  std::vector<RankedTensorType> resultTypes;
  std::vector<std::string> resultNames;
  for (unsigned i = 0; i < fnType.getNumResults(); ++i) {
    resultNames.push_back(nameOf(entry, i, true));
    auto type = llvm::dyn_cast<RankedTensorType>(fnType.getResult(i));
    if (!type || !elementBytes(type.getElementType()))
      fail("result " + llvm::Twine(i) + " of @" + fnName +
           " is not a ranked tensor of a supported element type");
    resultTypes.push_back(type);
  }
  if (!outputDir.empty()) {
    struct stat st;
    if (stat(outputDir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      fail("--output-dir " + outputDir + " is not a directory");
  }

  // Compile. The pipeline replaces the func.func: `entry` is not used after.
  // The caller's input buffers are read-only: bufferization must not update
  // them in place (a repeated run would see changed inputs).
  entry->setAttr("llvm.emit_c_interface", UnitAttr::get(&context));
  for (unsigned i = 0; i < entry.getNumArguments(); ++i)
    entry.setArgAttr(i, "bufferization.writable",
                     BoolAttr::get(&context, false));
  PassManager pm(&context, ModuleOp::getOperationName());
  if (failed(moe_mlir::buildCpuPipeline(pm)))
    fail("internal error: the CPU pipeline does not parse");
  if (failed(pm.run(*module)))
    fail("could not compile " + inputFile + " for the CPU");
  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(3, 0, nullptr);
  ExecutionEngineOptions options;
  options.transformer = optimize;
  auto engine = ExecutionEngine::create(*module, options);
  if (!engine)
    fail("JIT compilation of " + inputFile + " failed: " +
         llvm::toString(engine.takeError()));

  // Call.
  std::vector<Descriptor> argDescs;
  for (Buffer &b : args)
    argDescs.push_back(describe(b));
  size_t resultWords = 0;
  for (RankedTensorType t : resultTypes)
    resultWords += Descriptor::wordsFor(t.getRank());
  std::vector<int64_t> results(std::max<size_t>(resultWords, 1), 0);
  std::set<int64_t> inputPtrs;
  for (Buffer &b : args)
    inputPtrs.insert(reinterpret_cast<int64_t>(b.bytes.data()));

  std::vector<void *> argPtrs;
  void *resultPtr = results.data();
  std::vector<void *> descPtrs;
  for (Descriptor &d : argDescs)
    descPtrs.push_back(d.words.data());
  if (!resultTypes.empty())
    argPtrs.push_back(&resultPtr);
  for (void *&p : descPtrs)
    argPtrs.push_back(&p);

  auto freeResults = [&] {
    std::set<int64_t> freed;
    size_t at = 0;
    for (RankedTensorType t : resultTypes) {
      int64_t alloc = results[at];
      if (alloc && !inputPtrs.count(alloc) && freed.insert(alloc).second)
        std::free(reinterpret_cast<void *>(alloc));
      at += Descriptor::wordsFor(t.getRank());
    }
  };
  std::string symbol = "_mlir_ciface_" + fnName;
  auto runOnce = [&] {
    if (llvm::Error err = (*engine)->invokePacked(symbol, argPtrs))
      fail("running @" + fnName + " failed: " +
           llvm::toString(std::move(err)));
  };

  runOnce();
  if (repeat > 0) {
    std::vector<double> ms;
    for (unsigned r = 0; r < repeat; ++r) {
      freeResults();
      auto t0 = std::chrono::steady_clock::now();
      runOnce();
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    double median = ms.size() % 2 ? ms[ms.size() / 2]
                                  : 0.5 * (ms[ms.size() / 2 - 1] +
                                           ms[ms.size() / 2]);
    llvm::errs() << "moe-run: @" << fnName << " median " << median
                 << " ms over " << repeat << " runs\n";
  }

  // Results.
  size_t at = 0;
  for (unsigned i = 0; i < resultTypes.size(); ++i) {
    moe_rt::Array out = readResult(results.data() + at, resultTypes[i]);
    at += Descriptor::wordsFor(resultTypes[i].getRank());
    if (outputDir.empty())
      continue;
    std::string path = outputDir + "/" + resultNames[i] + ".npy";
    moe_rt::Status st = moe_rt::writeNpy(path, out);
    if (!st)
      fail(st.message);
  }
  freeResults();
  return 0;
}
