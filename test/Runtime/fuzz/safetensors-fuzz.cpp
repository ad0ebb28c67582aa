//===- safetensors-fuzz.cpp - libFuzzer target of SafeTensorsFile ---------===//
//
// Feeds arbitrary bytes to SafeTensorsFile::parse (the validation that open()
// runs on a mapped file). Built with -fsanitize=fuzzer,address,undefined; the
// runtime's sources are compiled into the target so that they are
// instrumented too. Besides memory errors, it traps when an accepted file
// breaks a promise of SafeTensors.h: every tensor lies inside the data
// section, its byte size is dtype size * element count, the tensors tile the
// data section in order, and find() returns each of them.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/SafeTensors.h"

#include <cstddef>
#include <cstdint>
#include <memory>

using namespace moe_rt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::unique_ptr<SafeTensorsFile> file;
  Status st = SafeTensorsFile::parse(data, size, "fuzz", file);
  if (!st) {
    // Failures leave the output untouched and say why on one line.
    if (file || st.message.empty() ||
        st.message.find('\n') != std::string::npos)
      __builtin_trap();
    return 0;
  }
  const auto *base = static_cast<const unsigned char *>(file->fileData());
  if (base != data || file->fileSize() != size || file->dataOffset() > size)
    __builtin_trap();
  uint64_t dataSize = size - file->dataOffset();
  uint64_t next = 0;
  volatile unsigned sink = 0;
  for (const TensorInfo &t : file->tensors()) {
    if (t.begin != next || t.end < t.begin || t.end > dataSize)
      __builtin_trap();
    next = t.end;
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        __builtin_trap();
      count *= static_cast<uint64_t>(d);
    }
    if (t.numElements < 0 || static_cast<uint64_t>(t.numElements) != count ||
        count * safeTensorsDTypeSize(t.dtype) != t.byteSize())
      __builtin_trap();
    const auto *p = static_cast<const unsigned char *>(t.data);
    if (p != base + file->dataOffset() + t.begin)
      __builtin_trap();
    // Touch the first and last byte: out of bounds would be caught by ASan.
    if (t.byteSize()) {
      sink = sink + p[0];
      sink = sink + p[t.byteSize() - 1];
    }
    if (file->find(t.name) != &t)
      __builtin_trap();
  }
  if (next != dataSize)
    __builtin_trap();
  return 0;
}
