//===- Progress.h - a one-line progress display on a terminal ---*- C++ -*-===//
//
// Part of moe-mlir.
//
// Long steps (compiling a large model, binding its weights) report what
// they are doing on one self-rewriting line of stderr, only when stderr is a
// terminal: logs, pipes and tests see nothing.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_PROGRESS_H
#define MOE_MLIR_SUPPORT_PROGRESS_H

#include <chrono>
#include <string>

namespace moe_mlir {

class Progress {
public:
  /// `tool` prefixes the line ("moe-compile").
  explicit Progress(std::string tool);
  ~Progress();

  bool enabled() const { return enabled_; }
  /// Shows "tool: stage" (and "[done/total]" when total > 0), at most every
  /// 100 ms unless `force`.
  void update(const std::string &stage, size_t done = 0, size_t total = 0,
              bool force = false);
  /// Erases the line.
  void clear();

private:
  std::string tool_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_;
};

} // namespace moe_mlir

#endif // MOE_MLIR_SUPPORT_PROGRESS_H
