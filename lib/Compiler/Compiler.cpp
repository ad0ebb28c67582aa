//===- Compiler.cpp - from an MLIR module to code for the host ------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/Compiler.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Pipelines/Pipelines.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <sstream>

using namespace mlir;

namespace moe_mlir {

static std::optional<moe_rt::DType> dtypeOf(Type t) {
  using moe_rt::DType;
  if (t.isF32())
    return DType::F32;
  if (t.isF16())
    return DType::F16;
  if (t.isBF16())
    return DType::BF16;
  if (t.isInteger(32))
    return DType::I32;
  if (t.isInteger(64))
    return DType::I64;
  if (t.isInteger(8))
    return DType::U8;
  if (t.isInteger(1))
    return DType::Bool;
  return std::nullopt;
}

static std::string nameOf(func::FuncOp fn, unsigned i, bool result) {
  auto attr = result ? fn.getResultAttrOfType<StringAttr>(i, "moe.name")
                     : fn.getArgAttrOfType<StringAttr>(i, "moe.name");
  if (attr)
    return attr.str();
  return (result ? "result" : "arg") + std::to_string(i);
}

static func::FuncOp findEntry(ModuleOp module, StringRef entryName) {
  if (!entryName.empty()) {
    auto fn = module.lookupSymbol<func::FuncOp>(entryName);
    if (!fn || fn.isDeclaration()) {
      module.emitError() << "no function @" << entryName << " to compile";
      return {};
    }
    return fn;
  }
  SmallVector<func::FuncOp> candidates;
  for (auto fn : module.getOps<func::FuncOp>())
    if (fn.isPublic() && !fn.isDeclaration())
      candidates.push_back(fn);
  if (candidates.size() == 1)
    return candidates.front();
  if (auto main = module.lookupSymbol<func::FuncOp>("main"))
    return main;
  module.emitError() << "the module has " << candidates.size()
                     << " public functions: name the entry point";
  return {};
}

static FailureOr<moe_rt::TensorSpec> specOf(func::FuncOp fn, unsigned i,
                                            bool result) {
  Type type = result ? fn.getResultTypes()[i] : fn.getArgumentTypes()[i];
  std::string name = nameOf(fn, i, result);
  auto tensor = dyn_cast<RankedTensorType>(type);
  std::optional<moe_rt::DType> dtype;
  if (tensor)
    dtype = dtypeOf(tensor.getElementType());
  if (!dtype) {
    fn.emitError() << (result ? "result '" : "argument '") << name
                   << "' has type " << type
                   << "; a model takes and returns ranked tensors of "
                      "f32/f16/bf16/i32/i64/i8/i1";
    return failure();
  }
  if (name.empty() ||
      name.find_first_of(" \t\r\n") != std::string::npos) {
    fn.emitError() << "the name '" << name << "' of "
                   << (result ? "result " : "argument ") << i
                   << " contains whitespace";
    return failure();
  }
  moe_rt::TensorSpec spec;
  spec.name = name;
  spec.dtype = *dtype;
  for (int64_t d : tensor.getShape())
    spec.shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return spec;
}

FailureOr<moe_rt::ModelInfo> prepareEntry(ModuleOp module,
                                          StringRef entryName) {
  func::FuncOp fn = findEntry(module, entryName);
  if (!fn)
    return failure();
  moe_rt::ModelInfo info;
  info.entry = fn.getSymName().str();
  // Where the weights that the arguments name live (set by importers).
  if (auto checkpoint = module->getAttrOfType<StringAttr>("moe.checkpoint"))
    info.weightsPath = checkpoint.str();
  llvm::StringSet<> names;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    FailureOr<moe_rt::TensorSpec> spec = specOf(fn, i, false);
    if (failed(spec))
      return failure();
    if (!names.insert(spec->name).second)
      return fn.emitError() << "two arguments are named '" << spec->name << "'";
    if (auto slots =
            fn.getArgAttrOfType<DenseI32ArrayAttr>(i, "moe.expert_slots"))
      spec->slotExperts.assign(slots.asArrayRef().begin(),
                               slots.asArrayRef().end());
    info.inputs.push_back(*spec);
  }
  if (auto ranks = fn->getAttrOfType<IntegerAttr>("moe.expert_parallel"))
    info.expertParallel = static_cast<int>(ranks.getInt());
  llvm::StringSet<> resultNames;
  for (unsigned i = 0; i < fn.getNumResults(); ++i) {
    FailureOr<moe_rt::TensorSpec> spec = specOf(fn, i, true);
    if (failed(spec))
      return failure();
    if (!resultNames.insert(spec->name).second)
      return fn.emitError() << "two results are named '" << spec->name << "'";
    info.outputs.push_back(*spec);
  }
  // The names now live in `info`; LLVM has no use for the attributes.
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    fn.removeArgAttr(i, "moe.name");
    fn.removeArgAttr(i, "moe.expert_slots");
  }
  for (unsigned i = 0; i < fn.getNumResults(); ++i)
    fn.removeResultAttr(i, StringAttr::get(module.getContext(), "moe.name"));
  // The caller's buffers (inputs, memory-mapped weights) are read-only:
  // bufferization must not update them in place.
  MLIRContext *ctx = module.getContext();
  fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    fn.setArgAttr(i, "bufferization.writable", BoolAttr::get(ctx, false));
  return info;
}

namespace {
/// Reports each pass that starts on a module (not the nested per-function
/// runs) to LowerOptions::beforePass.
struct PassObserver : PassInstrumentation {
  explicit PassObserver(std::function<void(StringRef)> callback)
      : callback(std::move(callback)) {}
  void runBeforePass(Pass *pass, Operation *op) override {
    if (isa<ModuleOp>(op))
      callback(pass->getArgument().empty() ? pass->getName()
                                           : pass->getArgument());
  }
  std::function<void(StringRef)> callback;
};
} // namespace

/// Whether `cpu` ("native": the host) has the LLVM subtarget feature
/// `feature`.
static FailureOr<bool> cpuHasFeature(StringRef cpu, StringRef feature,
                                     std::string &error) {
  if (cpu == "native") {
    llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
    auto it = features.find(feature);
    return it != features.end() && it->second;
  }
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return failure();
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      target->createMCSubtargetInfo(triple, cpu, ""));
  if (!info || !info->isCPUStringValid(cpu)) {
    error = "unknown CPU '" + cpu.str() + "' for " + triple.str();
    return failure();
  }
  return info->checkFeatures(("+" + feature).str());
}

FailureOr<ContractionOptions>
cpuContractionOptions(StringRef cpu, StringRef bf16Dot, std::string &error) {
  if (bf16Dot != "auto" && bf16Dot != "on" && bf16Dot != "off") {
    error = "bf16 dot products: expected auto, on or off, got '" +
            bf16Dot.str() + "'";
    return failure();
  }
  FailureOr<bool> has = cpuHasFeature(cpu, "avx512bf16", error);
  if (failed(has))
    return failure();
  if (bf16Dot == "on" && !*has) {
    error = "bf16 dot products: CPU '" +
            (cpu == "native" ? llvm::sys::getHostCPUName().str() : cpu.str()) +
            "' has no avx512bf16";
    return failure();
  }
  ContractionOptions options;
  options.bf16DotProducts = bf16Dot == "on" || (bf16Dot == "auto" && *has);
  return options;
}

LogicalResult shardExpertParallel(ModuleOp module,
                                  const ExpertParallelOptions &options) {
  if (options.ranks == 1)
    return success();
  moe::MoEExpertParallelOptions passOptions;
  passOptions.ranks = options.ranks;
  passOptions.placement = options.placement;
  passOptions.redundant = options.redundant;
  passOptions.routingProfile = options.routingProfile;
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  pm.addPass(moe::createMoEExpertParallel(passOptions));
  addPassStatisticsInstrumentation(pm);
  return pm.run(module);
}

LogicalResult exposeRouting(ModuleOp module) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  pm.addPass(moe::createMoEExposeRouting());
  addPassStatisticsInstrumentation(pm);
  return pm.run(module);
}

LogicalResult lowerForCpu(ModuleOp module, const LowerOptions &options) {
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  if (options.optimize &&
      failed(buildOptimizePipeline(pm, options.optimization)))
    return module.emitError("internal error: moe-optimize does not parse");
  if (failed(buildCpuPipeline(pm, options.contraction)))
    return module.emitError("internal error: the CPU pipeline does not parse");
  if (options.beforePass)
    pm.addInstrumentation(std::make_unique<PassObserver>(options.beforePass));
  if (options.passManagerCommandLine) {
    if (failed(applyPassManagerCLOptions(pm)))
      return module.emitError("invalid pass manager options");
    if (!options.timing)
      applyDefaultTimingPassManagerCLOptions(pm);
  }
  if (options.timing)
    pm.enableTiming();
  addPassStatisticsInstrumentation(pm);
  return pm.run(module);
}

/// The runtime hooks of expert-parallel models (convert-moe-to-linalg
/// declares moe_ep_* with i64 arguments). Defines them to call the fields of
/// the MoeEpHooks table (moe-mlir/Runtime/ExpertParallel.h) that
/// `moe_model_set_expert_parallel(hooks)` installs; addresses are converted
/// to pointers. Without a table they trap: the runtime never runs an
/// expert-parallel model without one.
static void defineExpertParallelHooks(ModuleOp module, OpBuilder &b) {
  struct Hook {
    StringRef name;
    unsigned field;
    // 'p': a pointer argument, 'i': an i64 argument.
    StringRef args;
    bool returnsI64;
  };
  static const Hook hooks[] = {{"moe_ep_rank", 0, "", true},
                               {"moe_ep_dispatch", 1, "piipiippp", true},
                               {"moe_ep_combine_back", 2, "ppiiip", false},
                               {"moe_ep_all_gather", 3, "piip", false}};
  bool any = false;
  for (const Hook &hook : hooks)
    if (auto fn = module.lookupSymbol<LLVM::LLVMFuncOp>(hook.name))
      any |= fn.isExternal();
  if (!any)
    return;
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  auto ptrTy = LLVM::LLVMPointerType::get(ctx);
  auto voidTy = LLVM::LLVMVoidType::get(ctx);
  auto i64 = b.getI64Type();

  b.setInsertionPointToEnd(module.getBody());
  auto table = LLVM::GlobalOp::create(b, loc, ptrTy, /*isConstant=*/false,
                                      LLVM::Linkage::Internal,
                                      "moe_ep_hooks", Attribute());
  {
    Block *init = b.createBlock(&table.getInitializerRegion());
    b.setInsertionPointToStart(init);
    LLVM::ReturnOp::create(b, loc,
                           LLVM::ZeroOp::create(b, loc, ptrTy).getResult());
  }
  b.setInsertionPointToEnd(module.getBody());
  auto setter = LLVM::LLVMFuncOp::create(
      b, loc, "moe_model_set_expert_parallel",
      LLVM::LLVMFunctionType::get(voidTy, {ptrTy}));
  Block *sb = setter.addEntryBlock(b);
  b.setInsertionPointToStart(sb);
  LLVM::StoreOp::create(b, loc, sb->getArgument(0),
                        LLVM::AddressOfOp::create(b, loc, table));
  LLVM::ReturnOp::create(b, loc, ValueRange{});

  for (const Hook &hook : hooks) {
    auto decl = module.lookupSymbol<LLVM::LLVMFuncOp>(hook.name);
    if (!decl || !decl.isExternal())
      continue;
    Block *entry = decl.addEntryBlock(b);
    decl.setLinkage(LLVM::Linkage::Internal);
    b.setInsertionPointToStart(entry);
    Value tablePtr = LLVM::LoadOp::create(
        b, loc, ptrTy, LLVM::AddressOfOp::create(b, loc, table));
    Value missing =
        LLVM::ICmpOp::create(b, loc, LLVM::ICmpPredicate::eq, tablePtr,
                             LLVM::ZeroOp::create(b, loc, ptrTy));
    Block *trap = b.createBlock(&decl.getBody());
    Block *call = b.createBlock(&decl.getBody());
    b.setInsertionPointToEnd(entry);
    LLVM::CondBrOp::create(b, loc, missing, trap, call);
    b.setInsertionPointToStart(trap);
    LLVM::Trap::create(b, loc);
    LLVM::UnreachableOp::create(b, loc);

    b.setInsertionPointToStart(call);
    Value slot = LLVM::GEPOp::create(
        b, loc, ptrTy, ptrTy, tablePtr,
        ArrayRef<LLVM::GEPArg>{static_cast<int32_t>(hook.field)});
    Value target = LLVM::LoadOp::create(b, loc, ptrTy, slot);
    SmallVector<Type> argTypes;
    SmallVector<Value> args{target};
    for (auto [i, kind] : llvm::enumerate(hook.args)) {
      Value arg = call->getParent()->front().getArgument(i);
      if (kind == 'p') {
        argTypes.push_back(ptrTy);
        args.push_back(LLVM::IntToPtrOp::create(b, loc, ptrTy, arg));
      } else {
        argTypes.push_back(i64);
        args.push_back(arg);
      }
    }
    auto type = LLVM::LLVMFunctionType::get(hook.returnsI64 ? Type(i64)
                                                            : Type(voidTy),
                                            argTypes);
    auto result = LLVM::CallOp::create(b, loc, type, args);
    if (hook.returnsI64)
      LLVM::ReturnOp::create(b, loc, result.getResult());
    else
      LLVM::ReturnOp::create(b, loc, ValueRange{});
  }
}

LogicalResult addModelAbi(ModuleOp module, const moe_rt::ModelInfo &info) {
  MLIRContext *ctx = module.getContext();
  std::string cifaceName = "_mlir_ciface_" + info.entry;
  auto ciface = module.lookupSymbol<LLVM::LLVMFuncOp>(cifaceName);
  if (!ciface)
    return module.emitError() << "internal error: no " << cifaceName
                              << " after lowering";
  Location loc = module.getLoc();
  OpBuilder b(ctx);
  b.setInsertionPointToEnd(module.getBody());
  auto ptrTy = LLVM::LLVMPointerType::get(ctx);
  auto voidTy = LLVM::LLVMVoidType::get(ctx);

  // void moe_model_invoke(void **args): args[i] is the i-th parameter of
  // the C interface (result descriptors first, then the inputs).
  auto invoke = LLVM::LLVMFuncOp::create(
      b, loc, "moe_model_invoke", LLVM::LLVMFunctionType::get(voidTy, {ptrTy}));
  Block *body = invoke.addEntryBlock(b);
  b.setInsertionPointToStart(body);
  SmallVector<Value> callArgs;
  unsigned numParams = ciface.getFunctionType().getNumParams();
  for (unsigned i = 0; i < numParams; ++i) {
    Value slot = LLVM::GEPOp::create(b, loc, ptrTy, ptrTy, body->getArgument(0),
                                     ArrayRef<LLVM::GEPArg>{static_cast<int32_t>(i)});
    callArgs.push_back(LLVM::LoadOp::create(b, loc, ptrTy, slot));
  }
  LLVM::CallOp::create(b, loc, ciface, callArgs);
  LLVM::ReturnOp::create(b, loc, ValueRange{});

  // The thread pool hook. moe_parallel_dispatch(task, closure, n), called by
  // the loops moe-outline-parallel-loops outlined, hands the n iterations to
  // the pool installed by moe_model_set_parallel_for(pool), or runs them
  // here when there is none.
  if (auto decl = module.lookupSymbol<LLVM::LLVMFuncOp>("moe_parallel_dispatch");
      decl && decl.isExternal()) {
    auto i64 = b.getI64Type();
    b.setInsertionPointToEnd(module.getBody());
    auto pool = LLVM::GlobalOp::create(b, loc, ptrTy, /*isConstant=*/false,
                                       LLVM::Linkage::Internal,
                                       "moe_parallel_pool", Attribute());
    {
      Block *init = b.createBlock(&pool.getInitializerRegion());
      b.setInsertionPointToStart(init);
      LLVM::ReturnOp::create(b, loc, LLVM::ZeroOp::create(b, loc, ptrTy).getResult());
    }
    b.setInsertionPointToEnd(module.getBody());
    auto setter = LLVM::LLVMFuncOp::create(
        b, loc, "moe_model_set_parallel_for",
        LLVM::LLVMFunctionType::get(voidTy, {ptrTy}));
    Block *sb = setter.addEntryBlock(b);
    b.setInsertionPointToStart(sb);
    Value addr = LLVM::AddressOfOp::create(b, loc, pool);
    LLVM::StoreOp::create(b, loc, sb->getArgument(0), addr);
    LLVM::ReturnOp::create(b, loc, ValueRange{});

    // Define the declared dispatch.
    Block *db = decl.addEntryBlock(b);
    decl.setLinkage(LLVM::Linkage::Internal);
    b.setInsertionPointToStart(db);
    Value task = db->getArgument(0), closure = db->getArgument(1),
          n = db->getArgument(2);
    Value poolFn = LLVM::LoadOp::create(
        b, loc, ptrTy, LLVM::AddressOfOp::create(b, loc, pool));
    Value none = LLVM::ICmpOp::create(b, loc, LLVM::ICmpPredicate::eq, poolFn,
                                      LLVM::ZeroOp::create(b, loc, ptrTy));
    Block *serial = b.createBlock(&decl.getBody());
    Block *pooled = b.createBlock(&decl.getBody());
    b.setInsertionPointToEnd(db);
    LLVM::CondBrOp::create(b, loc, none, serial, pooled);
    b.setInsertionPointToStart(serial);
    auto taskType = LLVM::LLVMFunctionType::get(voidTy, {ptrTy, i64, i64});
    Value zero = LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(0));
    LLVM::CallOp::create(b, loc, taskType, ValueRange{task, closure, zero, n});
    LLVM::ReturnOp::create(b, loc, ValueRange{});
    b.setInsertionPointToStart(pooled);
    auto poolType = LLVM::LLVMFunctionType::get(voidTy, {ptrTy, ptrTy, i64});
    LLVM::CallOp::create(b, loc, poolType, ValueRange{poolFn, task, closure, n});
    LLVM::ReturnOp::create(b, loc, ValueRange{});
  }

  defineExpertParallelHooks(module, b);

  // const char *moe_model_metadata(void)
  b.setInsertionPointToEnd(module.getBody());
  auto metadata = LLVM::LLVMFuncOp::create(
      b, loc, "moe_model_metadata", LLVM::LLVMFunctionType::get(ptrTy, {}));
  b.setInsertionPointToStart(metadata.addEntryBlock(b));
  std::string text = moe_rt::serializeModelInfo(info);
  text.push_back('\0');
  Value str = LLVM::createGlobalString(loc, b, "moe_model_metadata_text", text,
                                       LLVM::Linkage::Internal);
  LLVM::ReturnOp::create(b, loc, str);
  return success();
}

LogicalResult emitObjectFile(ModuleOp module, StringRef path, StringRef cpu,
                             std::string &error) {
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext);
  if (!llvmModule) {
    error = "could not translate the module to LLVM IR";
    return failure();
  }
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return failure();
  std::string cpuName = cpu == "native" ? llvm::sys::getHostCPUName().str()
                                        : cpu.str();
  std::string features;
  if (cpu == "native") {
    llvm::SubtargetFeatures f;
    for (auto &feature : llvm::sys::getHostCPUFeatures())
      f.AddFeature(feature.first(), feature.second);
    features = f.getString();
  }
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpuName, features, options, llvm::Reloc::PIC_));
  if (!machine) {
    error = "no target machine for " + triple.str() + " (" + cpuName + ")";
    return failure();
  }
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(machine->createDataLayout());
  auto optimize = makeOptimizingTransformer(3, 0, machine.get());
  if (llvm::Error err = optimize(llvmModule.get())) {
    error = llvm::toString(std::move(err));
    return failure();
  }
  std::error_code ec;
  llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_None);
  if (ec) {
    error = "cannot write " + path.str() + ": " + ec.message();
    return failure();
  }
  llvm::legacy::PassManager codegen;
  if (machine->addPassesToEmitFile(codegen, out, nullptr,
                                   llvm::CodeGenFileType::ObjectFile)) {
    error = "the target cannot emit object files";
    return failure();
  }
  codegen.run(*llvmModule);
  out.flush();
  return success();
}

LogicalResult linkSharedLibrary(StringRef object, StringRef output,
                                std::string &error) {
  llvm::ErrorOr<std::string> lld = llvm::sys::findProgramByName("ld.lld");
  if (!lld) {
    llvm::ErrorOr<std::string> alt = llvm::sys::findProgramByName(
        "ld.lld", {"/usr/lib/llvm-22/bin"});
    if (!alt) {
      error = "ld.lld not found (install lld)";
      return failure();
    }
    lld = alt;
  }
  // libm for the transcendental functions, libc for malloc/free: both are
  // resolved by the dynamic loader, recorded as DT_NEEDED.
  SmallVector<StringRef> args = {*lld,       "-shared", "--as-needed",
                                 "-o",       output,    object,
                                 "-lm",      "-lc",     "-L/usr/lib/x86_64-linux-gnu",
                                 "-L/lib/x86_64-linux-gnu"};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*lld, args, std::nullopt, {}, 0, 0,
                                     &message);
  if (rc != 0) {
    error = "ld.lld failed" + (message.empty() ? "" : ": " + message);
    return failure();
  }
  return success();
}

static const char *cTypeName(moe_rt::DType dtype) {
  switch (dtype) {
  case moe_rt::DType::F32:
    return "float";
  case moe_rt::DType::F16:
  case moe_rt::DType::BF16:
    return "uint16_t";
  case moe_rt::DType::I32:
    return "int32_t";
  case moe_rt::DType::I64:
    return "int64_t";
  case moe_rt::DType::U8:
  case moe_rt::DType::Bool:
    return "uint8_t";
  }
  return "void";
}

std::string generateHeader(const moe_rt::ModelInfo &info, StringRef source) {
  std::ostringstream h;
  std::string guard = "MOE_MODEL_" + info.entry + "_H";
  for (char &c : guard)
    c = std::isalnum(static_cast<unsigned char>(c))
            ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
            : '_';
  h << "/* Generated by moe-compile from " << source.str()
    << ". Do not edit. */\n"
    << "#ifndef " << guard << "\n#define " << guard << "\n\n"
    << "#include <stdint.h>\n\n"
    << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
    << "/* A strided buffer of rank R, as MLIR's C interface lays it out.\n"
    << "   Inputs are read-only for the model; results are allocated by the\n"
    << "   model with malloc (free `allocated` when done). */\n"
    << "#define MOE_DESCRIPTOR(R) struct { void *allocated; void *aligned; "
       "int64_t offset; int64_t sizes[R]; int64_t strides[R]; }\n\n"
    << "/* Entry point @" << info.entry << ".\n";
  auto describe = [&](const char *kind, const moe_rt::TensorSpec &s) {
    h << "     " << kind << ' ' << s.name << ": " << moe_rt::dtypeName(s.dtype)
      << ' ' << moe_rt::shapeToString(s.shape) << " (" << cTypeName(s.dtype)
      << " elements)\n";
  };
  for (const auto &s : info.inputs)
    describe("input ", s);
  for (const auto &s : info.outputs)
    describe("output", s);
  h << "   ? is a size chosen at run time. */\n\n"
    << "/* The ABI: args[0] points to the result descriptors (back to back, "
       "in\n   output order), then args[1 + i] to the descriptor of input i. "
       "*/\n"
    << "void moe_model_invoke(void **args);\n\n"
    << "/* The same description as text (see moe-mlir/Runtime/ModelInfo.h). "
       "*/\n"
    << "const char *moe_model_metadata(void);\n\n";
  h << "#define MOE_MODEL_NUM_INPUTS " << info.inputs.size() << "\n";
  h << "#define MOE_MODEL_NUM_OUTPUTS " << info.outputs.size() << "\n";
  h << "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n";
  return h.str();
}

} // namespace moe_mlir
