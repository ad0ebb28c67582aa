//===- onnx-file-fuzz.cpp - libFuzzer target of OnnxFile ------------------===//
//
// Feeds arbitrary bytes to OnnxFile::parse (the validation that open() runs
// on a mapped file). Built with -fsanitize=fuzzer,address,undefined; the
// runtime's sources are compiled into the target so that they are
// instrumented too. The input is parsed as if it were <dir>/fuzz.onnx, where
// <dir> is a scratch directory holding ext.bin (256 bytes) and sub/ext.bin
// (13 bytes), so that external data locations, offsets and lengths are
// exercised against real files. Besides memory errors, it traps when an
// accepted file breaks a promise of OnnxFile.h: the element count is the
// product of the dims, the byte size is that of the type, views of the
// model lie inside it, decoded data belong to the file, find() returns each
// initializer, and failures say why on one line.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/OnnxFile.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <sys/stat.h>

using namespace moe_rt;

static std::string origin;

static void writeFile(const std::string &path, size_t size) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    __builtin_trap();
  for (size_t i = 0; i < size; ++i)
    std::fputc(static_cast<int>((i * 37 + 11) & 0xff), f);
  std::fclose(f);
}

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/moe-onnx-fuzz-XXXXXX";
  if (!mkdtemp(pattern.data()))
    __builtin_trap();
  writeFile(pattern + "/ext.bin", 256);
  ::mkdir((pattern + "/sub").c_str(), 0700);
  writeFile(pattern + "/sub/ext.bin", 13);
  origin = pattern + "/fuzz.onnx";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::unique_ptr<OnnxFile> file;
  Status st = OnnxFile::parse(data, size, origin, file);
  if (!st) {
    if (file || st.message.empty() ||
        st.message.find('\n') != std::string::npos ||
        st.message.compare(0, origin.size() + 2, origin + ": ") != 0)
      __builtin_trap();
    return 0;
  }
  if (file->fileData() != data || file->fileSize() != size)
    __builtin_trap();
  volatile unsigned sink = 0;
  uint64_t decoded = 0;
  for (const OnnxTensorInfo &t : file->initializers()) {
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        __builtin_trap();
      count *= static_cast<uint64_t>(d);
    }
    if (t.numElements < 0 || static_cast<uint64_t>(t.numElements) != count)
      __builtin_trap();
    if (file->find(t.name) != &t || t.name.empty())
      __builtin_trap();
    if (!isFixedSizeOnnxDType(t.dataType)) {
      if (t.data || t.byteSize)
        __builtin_trap();
      continue;
    }
    uint64_t bytes = 0;
    if (!onnxDataBytes(t.dataType, count, bytes) || bytes != t.byteSize ||
        (bytes == 0) != (t.data == nullptr))
      __builtin_trap();
    const auto *p = static_cast<const uint8_t *>(t.data);
    bool inModel = p >= data && p < data + size;
    switch (t.source) {
    case OnnxDataSource::RawData:
      if (p && (!inModel || bytes > static_cast<uint64_t>(data + size - p)))
        __builtin_trap();
      break;
    case OnnxDataSource::External:
      if (p && (inModel || t.decoded))
        __builtin_trap();
      break;
    case OnnxDataSource::None:
      if (bytes)
        __builtin_trap();
      break;
    default: // typed fields: a view of the model or decoded
      if (p && t.decoded == inModel)
        __builtin_trap();
      if (p && inModel && bytes > static_cast<uint64_t>(data + size - p))
        __builtin_trap();
      break;
    }
    if (t.decoded)
      decoded += bytes;
    // Touch the first and last byte: out of bounds would be caught by ASan
    // (or fault, for a file mapping).
    if (p) {
      sink = sink + p[0];
      sink = sink + p[bytes - 1];
    }
  }
  if (decoded != file->decodedBytes())
    __builtin_trap();
  return 0;
}
