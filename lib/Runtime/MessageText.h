//===- MessageText.h - file contents made safe for messages -----*- C++ -*-===//
//
// Part of moe-mlir's runtime (internal header).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_RUNTIME_MESSAGETEXT_H
#define MOE_MLIR_LIB_RUNTIME_MESSAGETEXT_H

#include <cstddef>
#include <string>

namespace moe_rt {

/// Text read from a file (a name, a header field), made safe for a one-line
/// message: printable ASCII is kept, a backslash (and, with `escapeQuotes`,
/// a single quote) is escaped with a backslash, other bytes become \xNN, and
/// text longer than `maxLen` is cut with "...".
std::string printableText(const std::string &text, size_t maxLen,
                          bool escapeQuotes);

} // namespace moe_rt

#endif // MOE_MLIR_LIB_RUNTIME_MESSAGETEXT_H
