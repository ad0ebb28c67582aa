//===- Progress.cpp - a one-line progress display on a terminal -----------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Support/Progress.h"

#include <cstdio>
#include <unistd.h>

using namespace moe_mlir;

Progress::Progress(std::string tool)
    : tool_(std::move(tool)), enabled_(isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() { clear(); }

void Progress::update(const std::string &stage, size_t done, size_t total,
                      bool force) {
  if (!enabled_)
    return;
  auto now = std::chrono::steady_clock::now();
  if (shown_ && !force && now - last_ < std::chrono::milliseconds(100) &&
      done != total)
    return;
  last_ = now;
  std::string line = tool_ + ": " + stage;
  if (total > 0)
    line += " [" + std::to_string(done) + "/" + std::to_string(total) + "]";
  if (line.size() > 100)
    line.resize(100);
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::clear() {
  if (!enabled_ || !shown_)
    return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}
