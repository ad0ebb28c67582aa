//===- ModelInfo.cpp - what a compiled model takes and returns ------------===//
//
// Part of moe-mlir's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/ModelInfo.h"

#include <climits>
#include <cstdint>
#include <sstream>

namespace moe_rt {

int ModelInfo::findInput(const std::string &name) const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].name == name)
      return static_cast<int>(i);
  return -1;
}

bool parseDType(const std::string &name, DType &out) {
  static const std::pair<const char *, DType> table[] = {
      {"f32", DType::F32}, {"f16", DType::F16}, {"bf16", DType::BF16},
      {"i32", DType::I32}, {"i64", DType::I64}, {"u8", DType::U8},
      {"bool", DType::Bool}};
  for (const auto &entry : table)
    if (name == entry.first) {
      out = entry.second;
      return true;
    }
  return false;
}

std::string shapeToString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += shape[i] < 0 ? std::string("?") : std::to_string(shape[i]);
  }
  return s + "]";
}

static void writeSpec(std::ostringstream &os, const char *kind,
                      const TensorSpec &spec) {
  os << kind << ' ' << spec.name << ' ' << dtypeName(spec.dtype) << ' '
     << spec.shape.size();
  for (int64_t d : spec.shape)
    os << ' ' << d;
  os << '\n';
}

std::string serializeModelInfo(const ModelInfo &info) {
  std::ostringstream os;
  os << "moe-model-abi " << kModelAbiVersion << '\n';
  os << "entry " << info.entry << '\n';
  if (!info.weightsPath.empty())
    os << "weights " << info.weightsPath << '\n';
  if (info.expertParallel != 1)
    os << "expert-parallel " << info.expertParallel << '\n';
  for (const TensorSpec &spec : info.inputs) {
    writeSpec(os, "input", spec);
    if (!spec.slotExperts.empty()) {
      os << "slots " << spec.name << ' ' << spec.slotExperts.size();
      for (int32_t e : spec.slotExperts)
        os << ' ' << e;
      os << '\n';
    }
  }
  for (const TensorSpec &spec : info.outputs)
    writeSpec(os, "output", spec);
  return os.str();
}

Status parseModelInfo(const std::string &text, const std::string &origin,
                      ModelInfo &out) {
  ModelInfo info;
  std::istringstream lines(text);
  std::string line;
  int lineNo = 0;
  bool sawVersion = false;
  auto bad = [&](const std::string &what) {
    return Status::error(origin + ": model metadata line " +
                         std::to_string(lineNo) + ": " + what);
  };
  while (std::getline(lines, line)) {
    ++lineNo;
    if (line.empty())
      continue;
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "moe-model-abi") {
      int version = 0;
      if (!(words >> version))
        return bad("malformed ABI version");
      if (version != kModelAbiVersion)
        return bad("ABI version " + std::to_string(version) +
                   ", this runtime supports " +
                   std::to_string(kModelAbiVersion));
      sawVersion = true;
    } else if (kind == "entry") {
      if (!(words >> info.entry))
        return bad("missing entry name");
    } else if (kind == "weights") {
      // The rest of the line, which may contain spaces.
      info.weightsPath = line.substr(std::string("weights ").size() <=
                                             line.size()
                                         ? std::string("weights ").size()
                                         : line.size());
      if (info.weightsPath.empty())
        return bad("missing weights path");
    } else if (kind == "expert-parallel") {
      if (!(words >> info.expertParallel) || info.expertParallel < 1)
        return bad("malformed expert-parallel degree");
    } else if (kind == "slots") {
      std::string name;
      int64_t count = -1;
      if (!(words >> name >> count) || count < 1 || count > (1 << 24))
        return bad("malformed slots record");
      if (info.inputs.empty() || info.inputs.back().name != name)
        return bad("slots of '" + name + "' do not follow its input line");
      TensorSpec &spec = info.inputs.back();
      for (int64_t i = 0; i < count; ++i) {
        int64_t e;
        if (!(words >> e) || e < -1 || e > INT32_MAX)
          return bad("malformed expert id in the slots of '" + name + "'");
        spec.slotExperts.push_back(static_cast<int32_t>(e));
      }
      if (spec.shape.empty() || spec.shape[0] < 1 ||
          count % spec.shape[0] != 0)
        return bad("the slots of '" + name + "' do not fill its leading "
                   "dimension");
    } else if (kind == "input" || kind == "output") {
      TensorSpec spec;
      std::string dtype;
      int64_t rank = -1;
      if (!(words >> spec.name >> dtype >> rank) || rank < 0 || rank > 64)
        return bad("malformed " + kind + " description");
      if (!parseDType(dtype, spec.dtype))
        return bad("unknown dtype '" + dtype + "'");
      for (int64_t i = 0; i < rank; ++i) {
        int64_t d;
        if (!(words >> d) || d < -1)
          return bad("malformed shape of " + kind + " '" + spec.name + "'");
        spec.shape.push_back(d);
      }
      (kind == "input" ? info.inputs : info.outputs).push_back(spec);
    } else {
      return bad("unknown record '" + kind + "'");
    }
  }
  if (!sawVersion)
    return Status::error(origin + ": not a moe-mlir model (no ABI version)");
  if (info.entry.empty())
    return Status::error(origin + ": model metadata names no entry point");
  for (const TensorSpec &spec : info.inputs)
    if (!spec.slotExperts.empty() &&
        static_cast<int64_t>(spec.slotExperts.size()) !=
            info.expertParallel * spec.shape[0])
      return Status::error(origin + ": model metadata: input '" + spec.name +
                           "' lists " +
                           std::to_string(spec.slotExperts.size()) +
                           " slots, expected " +
                           std::to_string(info.expertParallel) + " ranks x " +
                           std::to_string(spec.shape[0]));
  out = std::move(info);
  return Status::success();
}

} // namespace moe_rt
