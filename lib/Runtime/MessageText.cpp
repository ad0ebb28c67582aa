//===- MessageText.cpp - file contents made safe for messages -------------===//
//
// Part of moe-mlir's runtime.
//
//===----------------------------------------------------------------------===//

#include "MessageText.h"

namespace moe_rt {

std::string printableText(const std::string &text, size_t maxLen,
                          bool escapeQuotes) {
  static const char hex[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < text.size(); ++i) {
    if (s.size() >= maxLen) {
      s += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
    bool escaped = c == '\\' || (escapeQuotes && c == '\'');
    if (c >= 0x20 && c < 0x7f && !escaped) {
      s += static_cast<char>(c);
    } else if (escaped) {
      s += '\\';
      s += static_cast<char>(c);
    } else {
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    }
  }
  return s;
}

} // namespace moe_rt
