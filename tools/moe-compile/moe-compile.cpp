//===- moe-compile.cpp - compile a model ahead of time --------------------===//
//
// Part of moe-mlir.
//
// moe-compile MODEL.mlir|CHECKPOINT_DIR|MODEL.onnx -o model.so [--header model.h]
//             [--entry NAME] [--cpu native|NAME] [--bf16-dot auto|on|off]
//             [--emit so|obj|llvm-dialect]
//             [--ep N [--placement contiguous|round-robin|balanced]
//              [--redundant R] [--routing-profile FILE.json]]
//             [--expose-routing]
//             [--shape-only] [--time-stages]
//
// A Hugging Face checkpoint directory or an ONNX file is imported first
// (moe-import); the library then records the directory or file, where
// moe-run finds the weights.
// Lowers the model for the CPU and writes a shared library that exports the
// moe-mlir model ABI (moe-mlir/Runtime/Invoke.h): it needs no LLVM or MLIR
// library at run time, only libc and libm. Weights are the entry's
// arguments, bound by name when the model is run (moe-run maps them from
// safetensors files), so they are never baked into the code; constants
// written in the MLIR are embedded.
//
// With --ep N the MoE layers are sharded over N expert-parallel ranks
// (moe-expert-parallel): one library serves every rank, each binding only
// its experts' weights (see moe-mlir/Runtime/ExpertParallel.h); run it
// with moe-run --ep N. With --expose-routing every router's expert choices
// are extra outputs (routing.<layer>.e<E>), which moe-run --record-routing
// writes to a routing profile.
//
//===----------------------------------------------------------------------===//

#include "../CompileFlags.h"
#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Import/HF/Importer.h"
#include "moe-mlir/Import/ONNX/Importer.h"
#include "moe-mlir/InitAll.h"
#include "moe-mlir/Support/FirstError.h"
#include "moe-mlir/Support/Progress.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"

#include <chrono>

using namespace mlir;
namespace cl = llvm::cl;

using moe_mlir::flags::toolOptions;

static cl::opt<std::string>
    inputFile(cl::Positional, cl::desc("<model.mlir | checkpoint directory>"),
              cl::cat(toolOptions()));
static cl::opt<std::string>
    hfDir("hf",
          cl::desc("A Hugging Face checkpoint directory to compile (the "
                   "same as giving it as the input, as moe-run takes it)"),
          cl::value_desc("DIR"), cl::cat(toolOptions()));
static cl::opt<std::string>
    onnxFile("onnx",
             cl::desc("An ONNX model to compile (the same as giving "
                      "it as the input, as moe-run takes it)"),
             cl::value_desc("FILE.onnx"), cl::cat(toolOptions()));
static cl::opt<bool>
    shapeOnly("shape-only",
              cl::desc("Checkpoint directories: import from config.json alone, "
                       "without weight files"),
              cl::cat(toolOptions()));
static cl::opt<bool> timeStages(
    "time-stages",
    cl::desc("Print the time of each stage (import, lowering, code "
             "generation, linking) and the pass timing report to stderr"),
    cl::cat(toolOptions()));
static cl::opt<std::string> outputFile("o", cl::desc("Output file"),
                                       cl::value_desc("model.so"), cl::Required,
                                       cl::cat(toolOptions()));
static cl::opt<std::string> headerFile("header",
                                       cl::desc("Also write a C header"),
                                       cl::value_desc("model.h"),
                                       cl::cat(toolOptions()));
static cl::opt<std::string> entryName("entry",
                                      cl::desc("The function to compile"),
                                      cl::cat(toolOptions()));
static cl::opt<std::string>
    cpu("cpu",
        cl::desc("Target CPU: native (the host, default) or an LLVM "
                 "CPU name such as x86-64-v3"),
        cl::init("native"), cl::cat(toolOptions()));
static cl::opt<std::string> bf16Dot(
    "bf16-dot",
    cl::desc("bf16 weights: round the activations to bf16 and use AVX512-BF16 "
             "dot products with f32 accumulation: auto (where the CPU has "
             "avx512bf16, default), on or off (exact f32 products)"),
    cl::init("auto"), cl::cat(toolOptions()));
static cl::opt<int>
    epRanks("ep",
            cl::desc("Shard the MoE layers' experts over N expert-parallel "
                     "ranks (default 1: not sharded)"),
            cl::value_desc("N"), cl::init(1), cl::cat(toolOptions()));
static cl::opt<bool> exposeRouting(
    "expose-routing",
    cl::desc("Return every router's expert choices as extra outputs "
             "routing.<layer>.e<E> (for moe-run --record-routing)"),
    cl::cat(toolOptions()));
enum class Emit { SharedLibrary, Object, LLVMDialect };
static cl::opt<Emit> emit(
    "emit", cl::desc("What to write"), cl::init(Emit::SharedLibrary),
    cl::values(clEnumValN(Emit::SharedLibrary, "so", "a shared library"),
               clEnumValN(Emit::Object, "obj", "a relocatable object file"),
               clEnumValN(Emit::LLVMDialect, "llvm-dialect",
                          "the lowered module in the LLVM dialect")),
    cl::cat(toolOptions()));

[[noreturn]] static void fail(const llvm::Twine &message) {
  llvm::errs() << "moe-compile: " << message << "\n";
  std::exit(1);
}

int main(int argc, char **argv) {
  moe_mlir::handlePassStatisticsFlag(argc, argv);
  llvm::InitLLVM init(argc, argv);
  moe_mlir::flags::registerPassManagerFlags();
  moe_mlir::flags::showToolOptions(
      {"mlir-timing", "mlir-print-ir-after-all", "mlir-print-ir-before-all"});
  cl::ParseCommandLineOptions(argc, argv, "moe-mlir ahead-of-time compiler\n");
  if (!inputFile.empty() + !hfDir.empty() + !onnxFile.empty() > 1)
    fail("give the model once: as the input, with --hf or with --onnx");
  if (!hfDir.empty()) {
    inputFile = hfDir; // the importer names what is missing
  } else if (!onnxFile.empty()) {
    if (!moe_mlir::onnx_import::isOnnxFile(onnxFile))
      fail(onnxFile + ": --onnx expects a file named *.onnx");
    inputFile = onnxFile;
  }
  if (inputFile.empty())
    fail("no input: give a model.mlir, an .onnx file or a checkpoint "
         "directory (see --help)");
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

  moe_mlir::Progress progress("moe-compile");
  using Clock = std::chrono::steady_clock;
  Clock::time_point stageStart = Clock::now();
  auto endStage = [&](const char *stage) {
    Clock::time_point now = Clock::now();
    if (timeStages)
      llvm::errs() << llvm::format(
          "moe-compile: %-16s %8.3f s\n", stage,
          std::chrono::duration<double>(now - stageStart).count());
    stageStart = now;
  };

  std::string error;
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module;
  if (moe_mlir::hf::isCheckpointDirectory(inputFile)) {
    progress.update("importing " + inputFile, 0, 0, true);
    moe_mlir::hf::ImportOptions options;
    options.shapeOnly = shapeOnly;
    module = moe_mlir::hf::importModel(context, inputFile, options, error);
    if (!module)
      fail(error);
    endStage("import");
  } else if (moe_mlir::onnx_import::isOnnxFile(inputFile)) {
    progress.update("importing " + inputFile, 0, 0, true);
    module = moe_mlir::onnx_import::importOnnxModel(
        context, inputFile, moe_mlir::onnx_import::ImportOptions(), error);
    if (!module)
      fail(error);
    endStage("import");
  } else {
    auto file = openInputFile(inputFile, &error);
    if (!file)
      fail(error);
    sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      fail("could not parse " + inputFile);
    endStage("parse");
  }

  moe_mlir::FirstError firstError(&context);
  if (epRanks < 1)
    fail("--ep must be at least 1, got " + llvm::Twine(epRanks.getValue()));
  if (epRanks == 1 && moe_mlir::flags::placementGiven())
    fail("--placement, --redundant and --routing-profile need --ep N > 1");
  if (exposeRouting && failed(moe_mlir::exposeRouting(*module)))
    fail(inputFile + ": " + firstError.message("could not expose the routing"));
  if (failed(moe_mlir::shardExpertParallel(
          *module, moe_mlir::flags::expertParallel(epRanks))))
    fail(inputFile + ": " +
         firstError.message("could not shard it for expert parallelism"));
  FailureOr<moe_rt::ModelInfo> info =
      moe_mlir::prepareEntry(*module, entryName);
  if (failed(info))
    fail(inputFile + ": " + firstError.message("no entry point to compile"));
  moe_mlir::LowerOptions lowering;
  FailureOr<moe_mlir::ContractionOptions> contraction =
      moe_mlir::cpuContractionOptions(cpu, bf16Dot, error);
  if (failed(contraction))
    fail(error);
  lowering.contraction = *contraction;
  moe_mlir::flags::applyOptimization(lowering);
  lowering.timing = timeStages;
  lowering.beforePass = [&](llvm::StringRef pass) {
    progress.update(("lowering: " + pass).str());
  };
  if (failed(moe_mlir::lowerForCpu(*module, lowering)))
    fail(inputFile + ": " + firstError.message("could not lower it for the CPU"));
  if (failed(moe_mlir::addModelAbi(*module, *info)))
    fail(inputFile + ": " + firstError.message("could not add the model ABI"));
  endStage("lowering");

  if (emit == Emit::LLVMDialect) {
    auto out = openOutputFile(outputFile, &error);
    if (!out)
      fail(error);
    module->print(out->os());
    out->keep();
    return 0;
  }

  // The object goes next to the output; a failure leaves neither behind.
  std::string object = emit == Emit::Object ? outputFile : outputFile + ".o";
  progress.update("generating machine code", 0, 0, true);
  if (failed(moe_mlir::emitObjectFile(*module, object, cpu, error))) {
    llvm::sys::fs::remove(object);
    fail(error);
  }
  endStage("code generation");
  if (emit == Emit::SharedLibrary) {
    progress.update("linking", 0, 0, true);
    std::string partial = outputFile + ".partial";
    bool linked =
        succeeded(moe_mlir::linkSharedLibrary(object, partial, error));
    llvm::sys::fs::remove(object);
    if (!linked) {
      llvm::sys::fs::remove(partial);
      fail(error);
    }
    if (std::error_code ec = llvm::sys::fs::rename(partial, outputFile))
      fail("cannot write " + outputFile + ": " + ec.message());
    endStage("linking");
  }
  progress.clear();
  if (!headerFile.empty()) {
    auto out = openOutputFile(headerFile, &error);
    if (!out)
      fail(error);
    out->os() << moe_mlir::generateHeader(*info,
                                          llvm::sys::path::filename(inputFile));
    out->keep();
  }
  return 0;
}
