//===- json-fuzz.cpp - libFuzzer target of the JSON parser ----------------===//
//
// Feeds arbitrary bytes to parseJson (with a small depth limit, so that deep
// nesting is exercised cheaply). Built with -fsanitize=fuzzer,address,
// undefined. Besides memory errors, it traps when a promise of Json.h is
// broken: an error message is one line with the byte offset inside the
// input; an accepted value serializes to text that parses back to an equal
// value and serializes identically (a fixed point).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Json.h"

#include <cstddef>
#include <cstdint>
#include <string>

using namespace moe_rt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  JsonParseOptions options;
  options.maxDepth = 16;
  options.allowDuplicateKeys = size > 0 && (data[0] & 1);
  JsonValue value;
  size_t at = ~size_t(0);
  Status st = parseJson(reinterpret_cast<const char *>(data), size, value,
                        options, &at);
  if (!st) {
    if (at > size || st.message.find('\n') != std::string::npos ||
        st.message.compare(0, 8, "at byte ") != 0 || !value.isNull())
      __builtin_trap();
    return 0;
  }
  std::string text = serializeJson(value);
  JsonValue back;
  // The serialized form is compact, so it nests no deeper than the input.
  Status st2 = parseJson(text, back, options);
  if (!st2 || !(back == value) || serializeJson(back) != text)
    __builtin_trap();
  return 0;
}
