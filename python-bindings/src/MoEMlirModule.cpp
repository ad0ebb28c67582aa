//===- MoEMlirModule.cpp - the moe_mlir Python module ---------------------===//
//
// Part of moe-mlir.
//
// moe_mlir._core: a thin pybind11 layer over the C API
// (moe-mlir-c/MoEMlir.h); it sees no MLIR or LLVM header. Failures of the C
// API become Python exceptions carrying its one-line message: Error, and
// InvalidArgumentError (also a ValueError) / UnsupportedError (also a
// NotImplementedError) for the caller's mistakes and for what is not
// implemented yet. The GIL is released while moe-mlir works (imports,
// pipelines, compiling, runs). See docs/python.md.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir-c/MoEMlir.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;
using namespace py::literals;

namespace {

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

PyObject *errorType = nullptr;
PyObject *invalidArgumentType = nullptr;
PyObject *unsupportedType = nullptr;

[[noreturn]] void raise(PyObject *type, const std::string &message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}

/// Raises the exception for a failed status (the GIL must be held).
void check(MoeMlirStatus status) {
  if (moeMlirStatusIsSuccess(status))
    return;
  std::string message = moeMlirStatusGetMessage(status);
  MoeMlirStatusCode code = moeMlirStatusGetCode(status);
  moeMlirStatusDestroy(status);
  raise(code == MoeMlirStatusInvalidArgument  ? invalidArgumentType
        : code == MoeMlirStatusNotImplemented ? unsupportedType
                                              : errorType,
        message);
}

/// A str or os.PathLike as a path.
std::string pathOf(py::handle path) {
  return py::str(py::module_::import("os").attr("fspath")(path));
}

/// A path or a sequence of paths.
std::vector<std::string> pathsOf(py::handle paths) {
  std::vector<std::string> out;
  if (paths.is_none())
    return out;
  if (py::isinstance<py::str>(paths) || py::hasattr(paths, "__fspath__")) {
    out.push_back(pathOf(paths));
    return out;
  }
  for (py::handle path : paths)
    out.push_back(pathOf(path));
  return out;
}

//===----------------------------------------------------------------------===//
// dtypes and arrays
//===----------------------------------------------------------------------===//

/// The NumPy dtype results of `dtype` come back as (bf16 as float32, as
/// moe-run writes them).
py::dtype numpyDType(MoeMlirDType dtype) {
  switch (dtype) {
  case MoeMlirDTypeF32:
  case MoeMlirDTypeBF16:
    return py::dtype("float32");
  case MoeMlirDTypeF16:
    return py::dtype("float16");
  case MoeMlirDTypeI32:
    return py::dtype("int32");
  case MoeMlirDTypeI64:
    return py::dtype("int64");
  case MoeMlirDTypeU8:
    return py::dtype("uint8");
  case MoeMlirDTypeBool:
    return py::dtype("bool");
  }
  return py::dtype("float32");
}

/// The element type of a NumPy array as the model sees it. uint16 arrays
/// are bfloat16 bit patterns when the model takes bf16.
std::optional<MoeMlirDType> dtypeOf(const py::dtype &dt, MoeMlirDType want) {
  char kind = dt.kind();
  ssize_t size = dt.itemsize();
  if (kind == 'f' && size == 4)
    return MoeMlirDTypeF32;
  if (kind == 'f' && size == 2)
    return MoeMlirDTypeF16;
  if (kind == 'i' && size == 4)
    return MoeMlirDTypeI32;
  if (kind == 'i' && size == 8)
    return MoeMlirDTypeI64;
  if (kind == 'u' && size == 1)
    return MoeMlirDTypeU8;
  if (kind == 'b')
    return MoeMlirDTypeBool;
  if (kind == 'u' && size == 2 && want == MoeMlirDTypeBF16)
    return MoeMlirDTypeBF16;
  return std::nullopt;
}

bool isFloat(MoeMlirDType dtype) {
  return dtype == MoeMlirDTypeF32 || dtype == MoeMlirDTypeF16 ||
         dtype == MoeMlirDTypeBF16;
}

/// A result as a NumPy array that owns it (no copy).
py::array toNumpy(MoeMlirTensor tensor) {
  if (moeMlirTensorGetDType(tensor) == MoeMlirDTypeBF16)
    check(moeMlirTensorConvert(tensor, MoeMlirDTypeF32));
  py::dtype dt = numpyDType(moeMlirTensorGetDType(tensor));
  const int64_t *sizes = moeMlirTensorGetShape(tensor);
  std::vector<ssize_t> shape(sizes, sizes + moeMlirTensorGetRank(tensor));
  void *data = moeMlirTensorGetData(tensor);
  py::capsule owner(
      tensor.ptr, [](void *ptr) { moeMlirTensorDestroy(MoeMlirTensor{ptr}); });
  if (!data || moeMlirTensorGetNumBytes(tensor) == 0)
    return py::array(dt, shape);
  return py::array(dt, shape, data, owner);
}

/// One input ready for the C API: a view of the caller's array (no copy
/// when it is C-contiguous and of the model's dtype), or of a converted
/// copy.
struct Input {
  py::array keep;
  std::vector<int64_t> shape;
  MoeMlirTensor converted{nullptr};
  MoeMlirTensorView view{};

  Input() = default;
  Input(const Input &) = delete;
  Input &operator=(const Input &) = delete;
  ~Input() {
    if (converted.ptr)
      moeMlirTensorDestroy(converted);
  }
};

void prepareInput(py::handle value, const MoeMlirTensorSpec &spec,
                  Input &input) {
  py::module_ np = py::module_::import("numpy");
  std::string name = spec.name;
  py::array array;
  if (py::isinstance<py::array>(value)) {
    array = py::reinterpret_borrow<py::array>(value);
  } else {
    // Lists and scalars take the model's type.
    MoeMlirDType as =
        spec.dtype == MoeMlirDTypeBF16 ? MoeMlirDTypeF32 : spec.dtype;
    array = np.attr("asarray")(value, "dtype"_a = numpyDType(as));
  }
  py::dtype dt = array.dtype();
  if (!dt.attr("isnative").cast<bool>())
    array = array.attr("astype")(dt.attr("newbyteorder")("="));
  std::optional<MoeMlirDType> dtype = dtypeOf(array.dtype(), spec.dtype);
  if (!dtype)
    raise(invalidArgumentType, "input '" + name + "': dtype " +
                                   py::str(array.dtype()).cast<std::string>() +
                                   " is not supported (the model takes " +
                                   moeMlirDTypeGetName(spec.dtype) + ")");
  if (!(array.flags() & py::array::c_style))
    array = np.attr("ascontiguousarray")(array);
  input.keep = array;
  input.shape.assign(array.shape(), array.shape() + array.ndim());
  input.view = MoeMlirTensorView{*dtype, input.shape.size(), input.shape.data(),
                                 array.data()};
  if (*dtype != spec.dtype && isFloat(*dtype) && isFloat(spec.dtype)) {
    // f32 / f16 data for a bf16 or f16 input: rounded to nearest even, as
    // moe-run reads float .npy files.
    check(moeMlirTensorCreateConverted(&input.view, spec.dtype,
                                       &input.converted));
    input.view =
        MoeMlirTensorView{spec.dtype, input.shape.size(), input.shape.data(),
                          moeMlirTensorGetData(input.converted)};
  }
}

/// Token ids: a 1-D sequence of integers, as int64.
std::vector<int64_t> tokensOf(py::handle tokens) {
  py::module_ np = py::module_::import("numpy");
  py::array array = np.attr("asarray")(tokens);
  if (array.ndim() != 1)
    raise(invalidArgumentType,
          "tokens must be a 1-D sequence of token ids, got shape " +
              py::str(py::tuple(array.attr("shape"))).cast<std::string>());
  char kind = array.dtype().kind();
  if (array.size() > 0 && kind != 'i' && kind != 'u')
    raise(invalidArgumentType, "tokens must be integers, got dtype " +
                                   py::str(array.dtype()).cast<std::string>());
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids(array);
  return std::vector<int64_t>(ids.data(), ids.data() + ids.size());
}

//===----------------------------------------------------------------------===//
// Classes
//===----------------------------------------------------------------------===//

struct Context {
  MoeMlirContext context;
  Context() : context(moeMlirContextCreate()) {}
  ~Context() { moeMlirContextDestroy(context); }
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;
};

struct TensorSpec {
  std::string name;
  std::string dtype;
  py::tuple shape;

  static TensorSpec of(const MoeMlirTensorSpec &spec) {
    py::tuple shape(spec.rank);
    for (size_t d = 0; d < spec.rank; ++d)
      shape[d] = spec.shape[d] < 0 ? py::object(py::none())
                                   : py::object(py::int_(spec.shape[d]));
    return TensorSpec{spec.name, moeMlirDTypeGetName(spec.dtype), shape};
  }
  std::string repr() const {
    return "TensorSpec(name=" + py::repr(py::str(name)).cast<std::string>() +
           ", dtype='" + dtype +
           "', shape=" + py::repr(shape).cast<std::string>() + ")";
  }
};

class LanguageModel;

class CompiledModel {
public:
  explicit CompiledModel(MoeMlirCompiledModel model) : model_(model) {}
  ~CompiledModel() { moeMlirCompiledModelDestroy(model_); }
  CompiledModel(const CompiledModel &) = delete;
  CompiledModel &operator=(const CompiledModel &) = delete;

  MoeMlirCompiledModel handle() const { return model_; }
  size_t numInputs() const { return moeMlirCompiledModelGetNumInputs(model_); }
  size_t numOutputs() const {
    return moeMlirCompiledModelGetNumOutputs(model_);
  }
  std::string entry() const { return moeMlirCompiledModelGetEntry(model_); }

  std::vector<TensorSpec> inputs() const {
    std::vector<TensorSpec> specs;
    for (size_t i = 0; i < numInputs(); ++i)
      specs.push_back(TensorSpec::of(moeMlirCompiledModelGetInput(model_, i)));
    return specs;
  }
  std::vector<TensorSpec> outputs() const {
    std::vector<TensorSpec> specs;
    for (size_t i = 0; i < numOutputs(); ++i)
      specs.push_back(TensorSpec::of(moeMlirCompiledModelGetOutput(model_, i)));
    return specs;
  }

  void addWeights(py::handle paths) {
    for (const std::string &path : pathsOf(paths))
      check(moeMlirCompiledModelAddWeights(model_, path.c_str()));
    session_.reset();
  }

  /// Binds positional and keyword arguments to inputs and runs.
  py::dict call(const py::args &args, const py::kwargs &kwargs) {
    size_t n = numInputs();
    std::vector<py::handle> given(n);
    if (args.size() > n)
      throw py::type_error("@" + entry() + " takes " + std::to_string(n) +
                           " inputs, got " + std::to_string(args.size()) +
                           " positional arguments");
    for (size_t i = 0; i < args.size(); ++i)
      given[i] = args[i];
    for (auto item : kwargs) {
      std::string name = py::str(item.first);
      ptrdiff_t index = moeMlirCompiledModelFindInput(model_, name.c_str());
      if (index < 0)
        throw py::type_error("@" + entry() + " has no input named '" + name +
                             "'");
      if (given[index])
        throw py::type_error("input '" + name +
                             "' given both by position and by name");
      given[index] = item.second;
    }
    std::vector<std::unique_ptr<Input>> prepared(n);
    std::vector<const MoeMlirTensorView *> views(n, nullptr);
    for (size_t i = 0; i < n; ++i) {
      if (!given[i] || given[i].is_none())
        continue;
      prepared[i] = std::make_unique<Input>();
      prepareInput(given[i], moeMlirCompiledModelGetInput(model_, i),
                   *prepared[i]);
      views[i] = &prepared[i]->view;
    }
    std::vector<MoeMlirTensor> results(numOutputs(), MoeMlirTensor{nullptr});
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirCompiledModelRun(model_, n, views.data(), results.data());
    }
    check(status);
    py::dict out;
    for (size_t i = 0; i < results.size(); ++i)
      out[py::str(moeMlirCompiledModelGetOutput(model_, i).name)] =
          toNumpy(results[i]);
    return out;
  }

  py::dict run(py::handle inputs) {
    if (py::isinstance<py::dict>(inputs) || py::hasattr(inputs, "keys")) {
      py::kwargs kwargs;
      for (py::handle key : inputs.attr("keys")())
        kwargs[key] = inputs[key];
      return call(py::args(), kwargs);
    }
    py::tuple positional(py::reinterpret_borrow<py::object>(inputs));
    return call(py::args(positional), py::kwargs());
  }

  void save(py::handle path) {
    std::string p = pathOf(path);
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirCompiledModelSave(model_, p.c_str());
    }
    check(status);
  }

  void writeHeader(py::handle path) {
    check(moeMlirCompiledModelWriteHeader(model_, pathOf(path).c_str()));
  }

  /// The session logits() and generate() use.
  LanguageModel &session();

private:
  MoeMlirCompiledModel model_;
  std::shared_ptr<LanguageModel> session_;
};

class LanguageModel {
public:
  /// The session keeps what it needs of the compiled model alive.
  explicit LanguageModel(MoeMlirCompiledModel model) {
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirLanguageModelCreate(model, &session_);
    }
    check(status);
  }
  ~LanguageModel() {
    if (session_.ptr)
      moeMlirLanguageModelDestroy(session_);
  }
  LanguageModel(const LanguageModel &) = delete;
  LanguageModel &operator=(const LanguageModel &) = delete;

  int64_t vocabSize() const {
    return moeMlirLanguageModelGetVocabSize(session_);
  }
  int64_t cachedTokens() const {
    return moeMlirLanguageModelGetCachedTokens(session_);
  }
  void reset() { moeMlirLanguageModelReset(session_); }

  py::array forward(py::handle tokens) {
    std::vector<int64_t> ids = tokensOf(tokens);
    MoeMlirTensor logits{nullptr};
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirLanguageModelForward(session_, ids.data(), ids.size(),
                                           &logits);
    }
    check(status);
    return toNumpy(logits);
  }

  py::object generate(py::handle tokens, int64_t count, bool returnLogits) {
    std::vector<int64_t> ids = tokensOf(tokens);
    if (count < 0)
      raise(invalidArgumentType,
            "the number of tokens to generate must be at least 0, got " +
                std::to_string(count));
    py::array_t<int64_t> generated(count);
    int64_t *out = generated.mutable_data();
    MoeMlirTensor steps{nullptr};
    MoeMlirGenerationStats stats{};
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirLanguageModelGenerate(
          session_, ids.data(), ids.size(), count, out,
          returnLogits ? &steps : nullptr, &stats);
    }
    check(status);
    stats_ = py::dict("prefill_ms"_a = stats.prefillMs,
                      "decode_ms"_a = stats.decodeMs,
                      "decode_steps"_a = stats.decodeSteps);
    if (!returnLogits)
      return std::move(generated);
    return py::make_tuple(generated, toNumpy(steps));
  }

  py::object lastStats() const { return stats_; }

private:
  MoeMlirLanguageModel session_{nullptr};
  py::object stats_ = py::none();
};

LanguageModel &CompiledModel::session() {
  if (!session_)
    session_ = std::make_shared<LanguageModel>(model_);
  return *session_;
}

std::shared_ptr<CompiledModel> loadModel(py::handle path, py::handle weights) {
  std::string p = pathOf(path);
  MoeMlirCompiledModel handle{nullptr};
  MoeMlirStatus status;
  {
    py::gil_scoped_release release;
    status = moeMlirCompiledModelLoad(p.c_str(), &handle);
  }
  check(status);
  auto model = std::make_shared<CompiledModel>(handle);
  model->addWeights(weights);
  return model;
}

class Module {
public:
  Module(std::shared_ptr<Context> context, MoeMlirModule module,
         std::string origin)
      : context_(std::move(context)), module_(module),
        origin_(std::move(origin)) {}
  ~Module() { moeMlirModuleDestroy(module_); }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;

  /// Runs `make` (an import or parse into a fresh context) without the GIL.
  template <typename Fn>
  static std::unique_ptr<Module> create(const std::string &origin, Fn make) {
    auto context = std::make_shared<Context>();
    MoeMlirModule module{nullptr};
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = make(context->context, &module);
    }
    check(status);
    return std::make_unique<Module>(context, module, origin);
  }

  std::string str() const {
    std::string text;
    moeMlirModulePrint(
        module_,
        [](const char *data, size_t length, void *user) {
          static_cast<std::string *>(user)->append(data, length);
        },
        &text);
    return text;
  }

  std::string repr() const {
    return "<moe_mlir.Module from " +
           py::repr(py::str(origin_)).cast<std::string>() + ">";
  }

  py::object checkpoint() const {
    const char *path = moeMlirModuleGetCheckpoint(module_);
    return path ? py::object(py::str(path)) : py::object(py::none());
  }

  const std::string &origin() const { return origin_; }

  void runPipeline(const std::string &pipeline) {
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirModuleRunPipeline(module_, pipeline.c_str());
    }
    check(status);
  }

  void verify() { check(moeMlirModuleVerify(module_)); }

  std::unique_ptr<Module> clone() const {
    return std::make_unique<Module>(context_, moeMlirModuleClone(module_),
                                    origin_);
  }

  std::shared_ptr<CompiledModel> compile(const std::string &target, int64_t ep,
                                         const std::string &cpu,
                                         std::optional<std::string> entry,
                                         py::handle weights,
                                         const std::string &bf16Dot,
                                         const std::string &optimize) {
    MoeMlirCompileOptions options;
    moeMlirCompileOptionsInit(&options);
    options.target = target.c_str();
    options.expertParallelism = ep;
    options.cpu = cpu.c_str();
    options.entry = entry ? entry->c_str() : nullptr;
    options.bf16Dot = bf16Dot.c_str();
    options.optimize = optimize.c_str();
    MoeMlirCompiledModel handle{nullptr};
    MoeMlirStatus status;
    {
      py::gil_scoped_release release;
      status = moeMlirModuleCompile(module_, &options, &handle);
    }
    check(status);
    auto model = std::make_shared<CompiledModel>(handle);
    model->addWeights(weights);
    return model;
  }

private:
  std::shared_ptr<Context> context_; // outlives the module
  MoeMlirModule module_;
  std::string origin_;
};

std::unique_ptr<Module> importHF(py::handle directory, bool shapeOnly) {
  std::string path = pathOf(directory);
  return Module::create(path, [&](MoeMlirContext ctx, MoeMlirModule *out) {
    return moeMlirImportHuggingFace(ctx, path.c_str(), shapeOnly, out);
  });
}

std::unique_ptr<Module> importOnnx(py::handle file, bool raiseMoE) {
  std::string path = pathOf(file);
  return Module::create(path, [&](MoeMlirContext ctx, MoeMlirModule *out) {
    return moeMlirImportOnnx(ctx, path.c_str(), raiseMoE, out);
  });
}

std::unique_ptr<Module> parseText(const std::string &text,
                                  const std::string &sourceName) {
  return Module::create(
      sourceName, [&](MoeMlirContext ctx, MoeMlirModule *out) {
        return moeMlirModuleParse(ctx, text.data(), text.size(),
                                  sourceName.c_str(), out);
      });
}

std::unique_ptr<Module> parseFile(py::handle file) {
  std::string path = pathOf(file);
  return Module::create(path, [&](MoeMlirContext ctx, MoeMlirModule *out) {
    return moeMlirModuleParseFile(ctx, path.c_str(), out);
  });
}

const char *modelKind(py::handle path) {
  switch (moeMlirGetModelKind(pathOf(path).c_str())) {
  case MoeMlirModelKindHFCheckpoint:
    return "hf";
  case MoeMlirModelKindONNX:
    return "onnx";
  case MoeMlirModelKindSharedLibrary:
    return "library";
  case MoeMlirModelKindMLIR:
    return "mlir";
  }
  return "mlir";
}

PyObject *newException(py::module_ &m, const char *name, const char *doc,
                       py::handle bases) {
  std::string qualified = std::string("moe_mlir.") + name;
  PyObject *type =
      PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (!type)
    throw py::error_already_set();
  m.add_object(name, py::handle(type));
  return type;
}

} // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "moe-mlir's compiler and runtime (the C API of "
            "moe-mlir-c/MoEMlir.h); use the moe_mlir package.";

  errorType = newException(
      m, "Error",
      "A failure moe-mlir's tools report, with their one-line message: a "
      "missing or malformed file, an import, parse, pipeline or compile "
      "error, a weight that cannot be bound.",
      PyExc_RuntimeError);
  invalidArgumentType = newException(
      m, "InvalidArgumentError",
      "The caller's mistake: an input of the wrong shape or dtype, a token "
      "outside the vocabulary, an option out of range, an unknown pass.",
      py::make_tuple(py::handle(errorType), py::handle(PyExc_ValueError)));
  unsupportedType = newException(
      m, "UnsupportedError",
      "A request moe-mlir refuses because it cannot do it: target 'cuda' "
      "(there is no GPU code generation; compile for 'cpu').",
      py::make_tuple(py::handle(errorType),
                     py::handle(PyExc_NotImplementedError)));

  py::class_<TensorSpec>(m, "TensorSpec",
                         "A model input or output as the model declares it.")
      .def_readonly("name", &TensorSpec::name, "The name inputs are bound by.")
      .def_readonly("dtype", &TensorSpec::dtype,
                    "'f32', 'f16', 'bf16', 'i32', 'i64', 'u8' or 'bool'.")
      .def_readonly("shape", &TensorSpec::shape,
                    "The sizes; None for a size chosen at run time.")
      .def("__repr__", &TensorSpec::repr)
      .def("__eq__",
           [](const TensorSpec &a, const TensorSpec &b) {
             return a.name == b.name && a.dtype == b.dtype &&
                    a.shape.equal(b.shape);
           })
      .def("__hash__", [](const TensorSpec &s) {
        return py::hash(py::make_tuple(s.name, s.dtype, s.shape));
      });

  py::class_<LanguageModel, std::shared_ptr<LanguageModel>>(
      m, "LanguageModel",
      "A session over a compiled language model (a model whose entry takes "
      "input_ids and caches and returns logits and the grown caches, as the "
      "Hugging Face importer writes it): its weights bound, its caches kept "
      "between calls. Create one with CompiledModel.language_model().")
      .def_property_readonly("vocab_size", &LanguageModel::vocabSize,
                             "V, the number of logits per token.")
      .def_property_readonly("cached_tokens", &LanguageModel::cachedTokens,
                             "Tokens in the caches: the position of the next "
                             "token.")
      .def("reset", &LanguageModel::reset, "Forgets every cached token.")
      .def("forward", &LanguageModel::forward, "tokens"_a,
           "Runs the tokens at the next positions (after those cached) and "
           "returns their logits, float32 [len(tokens), V].")
      .def(
          "generate",
          [](LanguageModel &lm, py::handle tokens, int64_t n,
             bool returnLogits) {
            return lm.generate(tokens, n, returnLogits);
          },
          "tokens"_a, "n"_a, py::kw_only(), "return_logits"_a = false,
          "Greedy generation from empty caches, as moe-run --generate: the "
          "prompt, then n tokens, each the argmax of the last logits (the "
          "lowest id among equal maxima). Returns the n ids (int64), or "
          "(ids, logits) with return_logits, logits float32 [n, V] being "
          "the row each id was chosen from.")
      .def_property_readonly(
          "last_stats", &LanguageModel::lastStats,
          "Timings of the last generate(): {'prefill_ms', 'decode_ms', "
          "'decode_steps'}, or None.");

  py::class_<CompiledModel, std::shared_ptr<CompiledModel>>(
      m, "CompiledModel",
      "A model compiled to a shared library (Module.compile) or loaded "
      "from one (moe_mlir.load). Call it with NumPy arrays: "
      "model(x, y=...) returns {output name: array}.")
      .def_property_readonly("entry", &CompiledModel::entry,
                             "The entry function's name.")
      .def_property_readonly("inputs", &CompiledModel::inputs,
                             "The inputs, in order (list of TensorSpec).")
      .def_property_readonly("outputs", &CompiledModel::outputs,
                             "The outputs, in order (list of TensorSpec).")
      .def_property_readonly(
          "checkpoint",
          [](const CompiledModel &model) -> py::object {
            const char *path =
                moeMlirCompiledModelGetCheckpoint(model.handle());
            return path ? py::object(py::str(path)) : py::object(py::none());
          },
          "The checkpoint the model records (the directory or .onnx file it "
          "was imported from), where inputs not given are bound from; or "
          "None.")
      .def_property_readonly(
          "metadata",
          [](const CompiledModel &model) {
            return std::string(moeMlirCompiledModelGetMetadata(model.handle()));
          },
          "The model's metadata record (moe_model_metadata()).")
      .def(
          "has_weight",
          [](const CompiledModel &model, const std::string &name) {
            ptrdiff_t index =
                moeMlirCompiledModelFindInput(model.handle(), name.c_str());
            return index >= 0 &&
                   moeMlirCompiledModelHasWeight(model.handle(),
                                                 static_cast<size_t>(index));
          },
          "name"_a,
          "True when the weights hold a tensor for the input `name`, so "
          "that a call may leave it out.")
      .def("add_weights", &CompiledModel::addWeights, "paths"_a,
           "Binds inputs from these checkpoints (safetensors files, sharded "
           "indexes or directories, .onnx files), searched in order, "
           "instead of the recorded one (moe-run --weights).")
      .def("__call__", &CompiledModel::call,
           "Runs the model once. Positional arguments are the first inputs "
           "in order, keyword arguments inputs by name (model(**{'a.b': x}) "
           "for names that are not identifiers); inputs left out are bound "
           "from the weights by name. Arrays of the model's dtype that are "
           "C-contiguous are passed without a copy; float32/float16 arrays "
           "are converted for f16/bf16 inputs (uint16 arrays are taken as "
           "bfloat16 bits); lists and scalars are converted to the input's "
           "dtype. Returns {output name: array} in output order (bf16 "
           "outputs as float32).")
      .def("run", &CompiledModel::run, "inputs"_a,
           "model.run({name: array, ...}) or model.run([array, ...]): the "
           "same as calling the model.")
      .def("save", &CompiledModel::save, "path"_a,
           "Writes the shared library: moe-run runs it (and binds the "
           "weights from the checkpoint it records), moe_mlir.load loads "
           "it.")
      .def("write_header", &CompiledModel::writeHeader, "path"_a,
           "Writes the C header moe-compile --header writes.")
      .def(
          "language_model",
          [](const CompiledModel &model) {
            return std::make_shared<LanguageModel>(model.handle());
          },
          "A new LanguageModel session (its own caches) over this model.")
      .def(
          "logits",
          [](CompiledModel &model, py::handle tokens) {
            LanguageModel &lm = model.session();
            lm.reset();
            return lm.forward(tokens);
          },
          "tokens"_a,
          "A language model's logits for a prompt, float32 [len(tokens), "
          "V], from empty caches (moe-run --tokens ... --logits-out).")
      .def(
          "generate",
          [](CompiledModel &model, py::handle tokens, int64_t n,
             bool returnLogits) {
            return model.session().generate(tokens, n, returnLogits);
          },
          "tokens"_a, "n"_a, py::kw_only(), "return_logits"_a = false,
          "Greedy generation (moe-run --tokens ... --generate n): the n "
          "generated ids as int64, or (ids, logits [n, V]) with "
          "return_logits.")
      .def("__repr__", [](const CompiledModel &model) {
        return "<moe_mlir.CompiledModel @" + model.entry() + ": " +
               std::to_string(model.numInputs()) + " inputs, " +
               std::to_string(model.numOutputs()) + " outputs>";
      });

  py::class_<Module>(
      m, "Module",
      "An MLIR module: imported (moe_mlir.import_hf, moe_mlir.import_onnx) "
      "or parsed (moe_mlir.parse, Module.from_file). str() gives its text.")
      .def_static("parse", &parseText, "text"_a, "source_name"_a = "<string>",
                  "Parses MLIR text.")
      .def_static("from_file", &parseFile, "path"_a, "Parses an MLIR file.")
      .def("__str__", &Module::str)
      .def("__repr__", &Module::repr)
      .def_property_readonly("origin", &Module::origin,
                             "The file or directory it came from, as "
                             "messages name it.")
      .def_property_readonly(
          "checkpoint", &Module::checkpoint,
          "The checkpoint the importer recorded (weights are bound from it "
          "when the compiled model runs), or None.")
      .def(
          "run_pipeline",
          [](Module &module, const std::string &pipeline) -> Module & {
            module.runPipeline(pipeline);
            return module;
          },
          "pipeline"_a, py::return_value_policy::reference_internal,
          "Runs a moe-opt pass pipeline on the module in place and returns "
          "the module: 'canonicalize,cse', 'builtin.module(canonicalize)', "
          "'moe-cpu-pipeline'. Every pass moe-opt knows is available.")
      .def("verify", &Module::verify,
           "Raises Error when the module does not verify.")
      .def("clone", &Module::clone, "A deep copy.")
      .def("compile", &Module::compile, py::kw_only(), "target"_a = "cpu",
           "ep"_a = 1, "cpu"_a = "native", "entry"_a = py::none(),
           "weights"_a = py::none(), "bf16_dot"_a = "auto",
           "optimize"_a = "",
           "Compiles the module ahead of time, as moe-compile does, and "
           "loads it. target: 'cpu' ('cuda' raises UnsupportedError: there "
           "is no GPU code generation); ep: shard the experts over ep ranks (save it "
           "and run it with moe-run --ep); cpu: "
           "'native' or an LLVM CPU name; entry: the function (default: "
           "the only public one, else main); weights: checkpoints to bind "
           "inputs from instead of the recorded one; bf16_dot: 'auto' "
           "(AVX512-BF16 dot products on bf16-rounded activations for bf16 "
           "weights where the CPU has avx512bf16), 'on' or 'off' (exact f32 "
           "products); optimize: the moe-optimize pipeline's options "
           "('fuse-shared-expert=false weight-absorption=naive'), '' for the "
           "defaults or 'off' to skip it. The module is left unchanged.");

  m.attr("__version__") = MOE_MLIR_VERSION;
  m.def("import_hf", &importHF, "directory"_a, py::kw_only(),
        "shape_only"_a = false,
        "Imports a Hugging Face checkpoint directory (config.json + "
        "safetensors) as moe-import does. shape_only: from config.json "
        "alone.");
  m.def("import_onnx", &importOnnx, "path"_a, py::kw_only(),
        "raise_moe"_a = true,
        "Imports an ONNX file as moe-import does (raise_moe=False is "
        "--no-raise).");
  m.def("parse", &parseText, "text"_a, "source_name"_a = "<string>",
        "Parses MLIR text into a Module.");
  m.def("load", &loadModel, "path"_a, py::kw_only(), "weights"_a = py::none(),
        "Loads a shared library written by moe-compile or "
        "CompiledModel.save. weights: checkpoints to bind inputs from "
        "instead of the recorded one.");
  m.def(
      "set_num_threads",
      [](int threads) {
        if (threads < 1)
          raise(invalidArgumentType,
                "the number of threads must be at least 1, got " +
                    std::to_string(threads));
        moeMlirSetNumThreads(threads);
      },
      "n"_a,
      "Sets the threads of the pool compiled models run on (moe-run "
      "--num-threads); results do not depend on it.");
  m.def("num_threads", &moeMlirGetNumThreads,
        "The threads of the pool (default: MOE_NUM_THREADS, else all "
        "hardware threads).");
  m.def("_model_kind", &modelKind, "path"_a,
        "'hf', 'onnx', 'library' or 'mlir', as the tools decide.");
}
