//===- TensorData.cpp - contents of ONNX TensorProtos ---------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// A TensorProto keeps its elements in one of: raw_data (little-endian
// bytes), a typed repeated field (float_data, int32_data holding every
// narrow integer, bool and 16-bit float as one element each, int64_data,
// double_data, uint64_data) or an external file (data_location = EXTERNAL,
// external_data entries location/offset/length, location relative to the
// model's directory).
//
//===----------------------------------------------------------------------===//

#include "TensorData.h"

#include "mlir/IR/BuiltinTypes.h"

#include <cstring>
#include <fstream>
#include <sys/stat.h>

using namespace mlir;
using namespace moe_mlir::onnx_import;

std::vector<int64_t>
moe_mlir::onnx_import::tensorShape(const onnx::TensorProto &tensor) {
  return std::vector<int64_t>(tensor.dims().begin(), tensor.dims().end());
}

/// Bytes per element of the ONNX types the importer reads (0: none).
static size_t elementSize(int32_t type) {
  switch (type) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32:
    return 4;
  case onnx::TensorProto::UINT8:
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::BOOL:
    return 1;
  case onnx::TensorProto::UINT16:
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
    return 2;
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::DOUBLE:
    return 8;
  default:
    return 0;
  }
}

namespace {
struct External {
  std::string location;
  uint64_t offset = 0;
  int64_t length = -1;
};
} // namespace

static bool parseExternal(const onnx::TensorProto &tensor,
                          const std::string &what, External &out,
                          std::string &error) {
  for (const onnx::StringStringEntryProto &e : tensor.external_data()) {
    if (e.key() == "location") {
      out.location = e.value();
    } else if (e.key() == "offset" || e.key() == "length") {
      char *end = nullptr;
      unsigned long long v = std::strtoull(e.value().c_str(), &end, 10);
      if (e.value().empty() || *end != '\0') {
        error = what + ": external data " + e.key() + " '" + e.value() +
                "' is not a number";
        return false;
      }
      if (e.key() == "offset")
        out.offset = v;
      else
        out.length = static_cast<int64_t>(v);
    }
  }
  if (out.location.empty()) {
    error = what + ": external data without a location";
    return false;
  }
  if (out.location[0] == '/' || out.location.find("..") != std::string::npos) {
    error = what + ": external data location '" + out.location +
            "' is outside the model's directory";
    return false;
  }
  return true;
}

/// Element count and byte size, or false on overflow/negative dims.
static bool byteSize(const onnx::TensorProto &tensor, const std::string &what,
                     int64_t &count, uint64_t &bytes, std::string &error) {
  count = 1;
  for (int64_t d : tensor.dims()) {
    if (d < 0 || (d != 0 && count > (INT64_MAX / d))) {
      error = what + ": invalid dims";
      return false;
    }
    count *= d;
  }
  size_t size = elementSize(tensor.data_type());
  if (size == 0) {
    error = what + ": element type " +
            (onnx::TensorProto::DataType_IsValid(tensor.data_type())
                 ? onnx::TensorProto::DataType_Name(
                       static_cast<onnx::TensorProto::DataType>(
                           tensor.data_type()))
                 : std::to_string(tensor.data_type())) +
            " is not supported";
    return false;
  }
  bytes = static_cast<uint64_t>(count) * size;
  return true;
}

/// Number of elements held in the typed field for this type.
static int64_t typedFieldCount(const onnx::TensorProto &t) {
  switch (t.data_type()) {
  case onnx::TensorProto::FLOAT:
    return t.float_data_size();
  case onnx::TensorProto::INT64:
    return t.int64_data_size();
  case onnx::TensorProto::DOUBLE:
    return t.double_data_size();
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::UINT64:
    return t.uint64_data_size();
  default:
    return t.int32_data_size();
  }
}

bool moe_mlir::onnx_import::checkTensorData(const onnx::TensorProto &tensor,
                                            const std::string &baseDir,
                                            const std::string &what,
                                            std::string &error) {
  int64_t count;
  uint64_t bytes;
  if (!byteSize(tensor, what, count, bytes, error))
    return false;
  if (tensor.has_segment()) {
    error = what + ": segmented tensors are not supported";
    return false;
  }
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    External ext;
    if (!parseExternal(tensor, what, ext, error))
      return false;
    if (ext.length >= 0 && static_cast<uint64_t>(ext.length) != bytes) {
      error = what + ": external data length " + std::to_string(ext.length) +
              " does not match its shape and type (" + std::to_string(bytes) +
              " bytes)";
      return false;
    }
    std::string path = baseDir + "/" + ext.location;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      error = what + ": external data file '" + path + "' is missing";
      return false;
    }
    if (static_cast<uint64_t>(st.st_size) < ext.offset + bytes) {
      error = what + ": external data file '" + path + "' is " +
              std::to_string(st.st_size) + " bytes, needs offset " +
              std::to_string(ext.offset) + " + " + std::to_string(bytes);
      return false;
    }
    return true;
  }
  if (tensor.has_raw_data()) {
    if (tensor.raw_data().size() != bytes) {
      error = what + ": raw_data holds " +
              std::to_string(tensor.raw_data().size()) + " bytes, its dims " +
              "and type need " + std::to_string(bytes);
      return false;
    }
    return true;
  }
  if (typedFieldCount(tensor) != count) {
    error = what + ": holds " + std::to_string(typedFieldCount(tensor)) +
            " elements, its dims need " + std::to_string(count);
    return false;
  }
  return true;
}

bool moe_mlir::onnx_import::readTensorBytes(const onnx::TensorProto &tensor,
                                            const std::string &baseDir,
                                            const std::string &what,
                                            std::vector<char> &out,
                                            std::string &error) {
  if (!checkTensorData(tensor, baseDir, what, error))
    return false;
  int64_t count;
  uint64_t bytes;
  byteSize(tensor, what, count, bytes, error);
  out.assign(bytes, 0);
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    External ext;
    parseExternal(tensor, what, ext, error);
    std::string path = baseDir + "/" + ext.location;
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(ext.offset));
    if (!in.read(out.data(), static_cast<std::streamsize>(bytes))) {
      error = what + ": could not read external data file '" + path + "'";
      return false;
    }
    return true;
  }
  if (tensor.has_raw_data()) {
    std::memcpy(out.data(), tensor.raw_data().data(), bytes);
    return true;
  }
  size_t size = elementSize(tensor.data_type());
  for (int64_t i = 0; i < count; ++i) {
    char *dst = out.data() + i * size;
    switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT: {
      float v = tensor.float_data(i);
      std::memcpy(dst, &v, 4);
      break;
    }
    case onnx::TensorProto::INT64: {
      int64_t v = tensor.int64_data(i);
      std::memcpy(dst, &v, 8);
      break;
    }
    case onnx::TensorProto::DOUBLE: {
      double v = tensor.double_data(i);
      std::memcpy(dst, &v, 8);
      break;
    }
    case onnx::TensorProto::UINT32: {
      uint32_t v = static_cast<uint32_t>(tensor.uint64_data(i));
      std::memcpy(dst, &v, 4);
      break;
    }
    case onnx::TensorProto::UINT64: {
      uint64_t v = tensor.uint64_data(i);
      std::memcpy(dst, &v, 8);
      break;
    }
    default: {
      // int32_data: the low `size` bytes of each entry.
      int32_t v = tensor.int32_data(i);
      std::memcpy(dst, &v, size);
      break;
    }
    }
  }
  return true;
}

DenseElementsAttr moe_mlir::onnx_import::tensorAttr(
    const onnx::TensorProto &tensor, RankedTensorType type,
    const std::string &baseDir, const std::string &what, std::string &error) {
  std::vector<char> bytes;
  if (!readTensorBytes(tensor, baseDir, what, bytes, error))
    return {};
  if (type.getElementType().isInteger(1)) {
    SmallVector<bool> values;
    for (char c : bytes)
      values.push_back(c != 0);
    return DenseElementsAttr::get(type, values);
  }
  if (type.getNumElements() == 0)
    return DenseElementsAttr::get(type, ArrayRef<Attribute>{});
  return DenseElementsAttr::getFromRawBuffer(type, bytes);
}
