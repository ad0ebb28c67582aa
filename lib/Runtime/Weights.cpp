//===- Weights.cpp - bind a model's inputs to checkpoint tensors ----------===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Weights.h"
#include "moe-mlir/Runtime/ExpertParallel.h"

#include <algorithm>
#include <cstring>

using namespace moe_rt;

static bool isFloat(DType d) {
  return d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

static float loadFloat(const uint8_t *p, DType dtype) {
  if (dtype == DType::F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return dtype == DType::F16 ? f16ToFloat(bits) : bf16ToFloat(bits);
}

static void storeFloat(uint8_t *p, DType dtype, float v) {
  if (dtype == DType::F32) {
    std::memcpy(p, &v, 4);
    return;
  }
  uint16_t bits = dtype == DType::BF16 ? floatToBF16(v) : floatToF16(v);
  std::memcpy(p, &bits, 2);
}

void moe_rt::convertFloats(const void *src, DType from, void *dst, DType to,
                           int64_t count) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(count) * dtypeSize(to));
    return;
  }
  auto *in = static_cast<const uint8_t *>(src);
  auto *out = static_cast<uint8_t *>(dst);
  size_t inSize = dtypeSize(from), outSize = dtypeSize(to);
  for (int64_t i = 0; i < count; ++i)
    storeFloat(out + i * outSize, to, loadFloat(in + i * inSize, from));
}

Array moe_rt::convertFloatArray(const Array &array, DType to) {
  if (array.dtype == to || !isFloat(array.dtype) || !isFloat(to))
    return array;
  Array out;
  out.dtype = to;
  out.shape = array.shape;
  int64_t n = array.numElements();
  out.data.resize(static_cast<size_t>(n) * dtypeSize(to));
  convertFloats(array.data.data(), array.dtype, out.data.data(), to, n);
  return out;
}

static bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status WeightSet::addCheckpoint(const std::string &path) {
  Source source;
  if (endsWith(path, ".onnx")) {
    if (Status st = OnnxFile::open(path, source.onnx); !st)
      return st;
  } else {
    if (Status st = openSafeTensorsCheckpoint(path, source.safetensors); !st)
      return st;
  }
  sources_.push_back(std::move(source));
  return Status::success();
}

bool WeightSet::find(const std::string &name, Found &out) const {
  for (const Source &source : sources_) {
    if (source.safetensors) {
      const SafeTensorsFile *file = nullptr;
      const TensorInfo *t = source.safetensors->find(name, &file);
      if (!t)
        continue;
      out = Found();
      out.file = &file->path();
      out.kind = "tensor";
      out.shape = &t->shape;
      out.numElements = t->numElements;
      out.data = t->data;
      out.region = file;
      out.hasDType = t->runtimeDType(out.dtype);
      out.dtypeName = safeTensorsDTypeName(t->dtype);
      out.aligned = t->isAligned();
      return true;
    }
    const OnnxTensorInfo *t = source.onnx->find(name);
    if (!t)
      continue;
    out = Found();
    out.file = &source.onnx->path();
    out.kind = "initializer";
    out.shape = &t->shape;
    out.numElements = t->numElements;
    out.data = t->data;
    out.region = t->region;
    out.hasDType = t->runtimeDType(out.dtype);
    out.dtypeName = t->dtypeName();
    out.aligned = t->isAligned();
    return true;
  }
  return false;
}

static std::string stackElementName(const std::string &pattern, int64_t i) {
  size_t star = pattern.find('*');
  return pattern.substr(0, star) + std::to_string(i) +
         pattern.substr(star + 1);
}

bool WeightSet::provides(const TensorSpec &spec) const {
  Found found;
  if (spec.name.find('*') == std::string::npos)
    return find(spec.name, found);
  // An expert-slot input: the first expert it lists.
  int64_t first = 0;
  for (int32_t e : spec.slotExperts)
    if (e >= 0) {
      first = e;
      break;
    }
  return find(stackElementName(spec.name, first), found);
}

/// What identifies a binding: the spec and the experts of its slots.
static std::string bindingKey(const TensorSpec &spec,
                              const std::vector<int32_t> *experts) {
  std::string key = spec.name + '\n' + dtypeName(spec.dtype) + ' ' +
                    shapeToString(spec.shape);
  if (experts) {
    key += " slots";
    for (int32_t e : *experts)
      key += ' ' + std::to_string(e);
  }
  return key;
}

Status WeightSet::bind(const TensorSpec &spec, TensorView &view) {
  if (!spec.slotExperts.empty()) {
    int64_t slots = spec.shape.empty() ? 0 : spec.shape[0];
    int64_t ranks =
        slots > 0 ? static_cast<int64_t>(spec.slotExperts.size()) / slots : 0;
    std::string what = "input '" + spec.name + "' holds the expert slots of " +
                       std::to_string(ranks) + " ranks";
    ExpertParallelRank *ep = ExpertParallelRank::current();
    if (!ep)
      return Status::error(what + " (an expert-parallel model): bind it for "
                                  "one rank of an EP group");
    if (ep->size() != ranks)
      return Status::error(what + ", but this thread's EP group has " +
                           std::to_string(ep->size()));
    return bindSlots(spec, slotsOfRank(spec, ep->rank()), view);
  }
  std::string key = bindingKey(spec, nullptr);
  auto it = bound_.find(key);
  if (it != bound_.end()) {
    view = it->second;
    return Status::success();
  }
  Status st = spec.name.find('*') == std::string::npos
                  ? bindPlain(spec, view)
                  : bindStacked(spec, view);
  if (st)
    bound_[key] = view;
  return st;
}

Status WeightSet::bindSlots(const TensorSpec &spec,
                            const std::vector<int32_t> &experts,
                            TensorView &view) {
  std::string key = bindingKey(spec, &experts);
  auto it = bound_.find(key);
  if (it != bound_.end()) {
    view = it->second;
    return Status::success();
  }
  Status st = bindSlotsUncached(spec, experts, view);
  if (st)
    bound_[key] = view;
  return st;
}

std::vector<int32_t> WeightSet::slotsOfRank(const TensorSpec &spec, int rank) {
  if (spec.shape.empty() || spec.shape[0] < 1 || rank < 0)
    return {};
  size_t slots = static_cast<size_t>(spec.shape[0]);
  size_t begin = static_cast<size_t>(rank) * slots;
  if (begin + slots > spec.slotExperts.size())
    return {};
  return std::vector<int32_t>(spec.slotExperts.begin() + begin,
                              spec.slotExperts.begin() + begin + slots);
}

std::string WeightSet::where() const {
  if (sources_.size() == 1)
    return sources_.front().safetensors ? sources_.front().safetensors->path()
                                        : sources_.front().onnx->path();
  return "the weight checkpoints";
}

Status WeightSet::bindPlain(const TensorSpec &spec, TensorView &view) {
  Found tensor;
  if (!find(spec.name, tensor))
    return Status::error(where() + ": no tensor '" + spec.name + "'");
  const std::string &file = *tensor.file;
  const std::string what = std::string(tensor.kind) + " '" + spec.name + "'";
  if (!tensor.hasDType)
    return Status::error(file + ": " + what + " has dtype " + tensor.dtypeName +
                         ", which the model cannot take");
  DType dtype = tensor.dtype;
  TensorView mapped{dtype, *tensor.shape, tensor.data};
  if (dtype == spec.dtype && tensor.aligned) {
    if (Status st = checkInput(spec, mapped); !st)
      return Status::error(file + ": " + st.message);
    view = mapped;
    return Status::success();
  }
  if (dtype != spec.dtype && !(isFloat(dtype) && isFloat(spec.dtype)))
    return Status::error(file + ": " + what + " has dtype " + dtypeName(dtype) +
                         ", the model takes " + dtypeName(spec.dtype));
  // A copy: another float type, or data not aligned to its element size.
  auto copy = std::make_unique<Array>();
  copy->dtype = spec.dtype;
  copy->shape = *tensor.shape;
  copy->data.resize(static_cast<size_t>(tensor.numElements) *
                    dtypeSize(spec.dtype));
  convertFloats(tensor.data, dtype, copy->data.data(), spec.dtype,
                tensor.numElements);
  if (Status st = checkInput(spec, TensorView::of(*copy)); !st)
    return Status::error(file + ": " + st.message);
  copiedBytes_ += copy->data.size();
  view = TensorView::of(*copy);
  owned_.push_back(std::move(copy));
  return Status::success();
}

Status WeightSet::bindStacked(const TensorSpec &spec, TensorView &view) {
  if (spec.shape.empty() || spec.shape[0] < 0)
    return Status::error("stacked input '" + spec.name +
                         "' needs a static leading dimension");
  int64_t count = spec.shape[0];
  std::vector<int64_t> elementShape(spec.shape.begin() + 1, spec.shape.end());
  int64_t elementCount = 1;
  for (int64_t d : elementShape)
    elementCount *= d;

  std::vector<Found> parts;
  for (int64_t i = 0; i < count; ++i) {
    std::string name = stackElementName(spec.name, i);
    Found tensor;
    if (!find(name, tensor))
      return Status::error(where() + ": no tensor '" + name + "' (element " +
                           std::to_string(i) + " of '" + spec.name + "')");
    const std::string &file = *tensor.file;
    if (!tensor.hasDType || !isFloat(tensor.dtype))
      return Status::error(file + ": " + tensor.kind + " '" + name +
                           "' has dtype " + tensor.dtypeName +
                           ", which the model cannot take");
    if (*tensor.shape != elementShape)
      return Status::error(file + ": " + tensor.kind + " '" + name +
                           "' has shape " + shapeToString(*tensor.shape) +
                           ", expected " + shapeToString(elementShape));
    parts.push_back(std::move(tensor));
  }

  DType dtype = parts.front().dtype;
  size_t elementBytes = static_cast<size_t>(elementCount) * dtypeSize(dtype);
  bool inPlace = dtype == spec.dtype && parts.front().aligned;
  for (int64_t i = 1; inPlace && i < count; ++i)
    inPlace =
        parts[i].region == parts[0].region &&
        parts[i].dtype == parts[0].dtype &&
        static_cast<const uint8_t *>(parts[i].data) ==
            static_cast<const uint8_t *>(parts[0].data) + i * elementBytes;
  if (inPlace) {
    view = TensorView{dtype, spec.shape, parts.front().data};
    return checkInput(spec, view);
  }
  auto copy = std::make_unique<Array>();
  copy->dtype = spec.dtype;
  copy->shape = spec.shape;
  size_t outBytes = static_cast<size_t>(elementCount) * dtypeSize(spec.dtype);
  copy->data.resize(outBytes * static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    convertFloats(parts[i].data, parts[i].dtype,
                  copy->data.data() + i * outBytes, spec.dtype, elementCount);
  copiedBytes_ += copy->data.size();
  view = TensorView::of(*copy);
  owned_.push_back(std::move(copy));
  return checkInput(spec, view);
}

Status WeightSet::bindSlotsUncached(const TensorSpec &spec,
                                    const std::vector<int32_t> &experts,
                                    TensorView &view) {
  if (spec.shape.empty() || spec.shape[0] < 0 ||
      spec.shape[0] != static_cast<int64_t>(experts.size()))
    return Status::error("input '" + spec.name + "' of shape " +
                         shapeToString(spec.shape) + ": " +
                         std::to_string(experts.size()) +
                         " experts for its slots, expected one per slot");
  int64_t count = spec.shape[0];
  std::vector<int64_t> elementShape(spec.shape.begin() + 1, spec.shape.end());
  int64_t elementCount = 1;
  for (int64_t d : elementShape) {
    if (d < 0)
      return Status::error("expert-slot input '" + spec.name +
                           "' needs static dimensions, has " +
                           shapeToString(spec.shape));
    elementCount *= d;
  }
  auto takes = [&](DType dtype) {
    return dtype == spec.dtype || (isFloat(dtype) && isFloat(spec.dtype));
  };

  // Where each slot's expert lies (null: an unused slot, zeros).
  std::vector<const uint8_t *> data(static_cast<size_t>(count), nullptr);
  std::vector<DType> dtypes(static_cast<size_t>(count), spec.dtype);
  std::vector<const void *> regions(static_cast<size_t>(count), nullptr);
  bool aligned = true;
  if (spec.name.find('*') == std::string::npos) {
    // One tensor [E, ...] holding every expert.
    Found whole;
    if (!find(spec.name, whole))
      return Status::error(where() + ": no tensor '" + spec.name + "'");
    const std::string &file = *whole.file;
    std::string what = std::string(whole.kind) + " '" + spec.name + "'";
    if (!whole.hasDType || !takes(whole.dtype))
      return Status::error(file + ": " + what + " has dtype " +
                           whole.dtypeName + ", the model takes " +
                           dtypeName(spec.dtype));
    const std::vector<int64_t> &shape = *whole.shape;
    if (shape.size() != spec.shape.size() ||
        !std::equal(elementShape.begin(), elementShape.end(),
                    shape.begin() + 1)) {
      std::vector<int64_t> expected = spec.shape;
      expected[0] = -1;
      return Status::error(file + ": " + what + " has shape " +
                           shapeToString(shape) + ", expected " +
                           shapeToString(expected) +
                           " (experts along the first dimension)");
    }
    int64_t available = shape[0];
    size_t elementBytes =
        static_cast<size_t>(elementCount) * dtypeSize(whole.dtype);
    for (int64_t s = 0; s < count; ++s) {
      int32_t e = experts[s];
      if (e < -1 || e >= available)
        return Status::error(file + ": " + what + " holds " +
                             std::to_string(available) + " experts; slot " +
                             std::to_string(s) + " takes expert " +
                             std::to_string(e));
      if (e >= 0)
        data[s] = static_cast<const uint8_t *>(whole.data) + e * elementBytes;
      dtypes[s] = whole.dtype;
      regions[s] = whole.region;
    }
    aligned = whole.aligned;
  } else {
    // One tensor per expert.
    for (int64_t s = 0; s < count; ++s) {
      int32_t e = experts[s];
      if (e < -1)
        return Status::error("input '" + spec.name + "': slot " +
                             std::to_string(s) + " takes expert " +
                             std::to_string(e));
      if (e < 0)
        continue;
      std::string name = stackElementName(spec.name, e);
      Found tensor;
      if (!find(name, tensor))
        return Status::error(where() + ": no tensor '" + name + "' (expert " +
                             std::to_string(e) + ", slot " + std::to_string(s) +
                             " of '" + spec.name + "')");
      const std::string &file = *tensor.file;
      if (!tensor.hasDType || !takes(tensor.dtype))
        return Status::error(file + ": " + tensor.kind + " '" + name +
                             "' has dtype " + tensor.dtypeName +
                             ", the model takes " + dtypeName(spec.dtype));
      if (*tensor.shape != elementShape)
        return Status::error(file + ": " + tensor.kind + " '" + name +
                             "' has shape " + shapeToString(*tensor.shape) +
                             ", expected " + shapeToString(elementShape));
      data[s] = static_cast<const uint8_t *>(tensor.data);
      dtypes[s] = tensor.dtype;
      regions[s] = tensor.region;
      aligned = aligned && tensor.aligned;
    }
  }

  // In place when the slots hold consecutive experts stored back to back as
  // the model takes them.
  size_t outBytes = static_cast<size_t>(elementCount) * dtypeSize(spec.dtype);
  bool inPlace = count > 0 && aligned;
  for (int64_t s = 0; inPlace && s < count; ++s)
    inPlace = data[s] && dtypes[s] == spec.dtype && regions[s] == regions[0] &&
              experts[s] == experts[0] + s && data[s] == data[0] + s * outBytes;
  if (inPlace) {
    view = TensorView{spec.dtype, spec.shape, data[0]};
    return checkInput(spec, view);
  }
  auto copy = std::make_unique<Array>();
  copy->dtype = spec.dtype;
  copy->shape = spec.shape;
  copy->data.assign(outBytes * static_cast<size_t>(count), 0);
  for (int64_t s = 0; s < count; ++s)
    if (data[s])
      convertFloats(data[s], dtypes[s], copy->data.data() + s * outBytes,
                    spec.dtype, elementCount);
  copiedBytes_ += copy->data.size();
  view = TensorView::of(*copy);
  owned_.push_back(std::move(copy));
  return checkInput(spec, view);
}
