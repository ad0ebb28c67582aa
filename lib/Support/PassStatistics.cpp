//===- PassStatistics.cpp - statistics of moe-mlir passes -----------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Support/PassStatistics.h"

#include "llvm/ADT/StringRef.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

using namespace moe_mlir;

namespace {
struct Entry {
  std::string description;
  std::atomic<uint64_t> value{0};
};

/// The statistics of every pass, by pass argument, then by name. Entries
/// live in a deque, so their addresses stay valid as the table grows.
struct Table {
  std::mutex mutex;
  std::deque<Entry> entries;
  std::map<std::string, std::map<std::string, Entry *>> byPass;
  /// The pass's display name for each pass argument.
  std::map<std::string, std::string> names;
  /// The arguments of the passes that ran.
  std::set<std::string> ran;
  bool enabled = false;
};

Table &table() {
  static Table *t = new Table; // outlives every pass, never destroyed
  return *t;
}

/// Records the passes that run.
class RanPasses : public mlir::PassInstrumentation {
  void record(mlir::Pass *pass) {
    Table &t = table();
    std::lock_guard<std::mutex> lock(t.mutex);
    t.ran.insert(pass->getArgument().str());
  }
  void runAfterPass(mlir::Pass *pass, mlir::Operation *) override {
    record(pass);
  }
  void runAfterPassFailed(mlir::Pass *pass, mlir::Operation *) override {
    record(pass);
  }
};

} // namespace

PassCounter::PassCounter(mlir::Pass *owner, const char *name,
                         const char *description) {
  Table &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::string pass = owner->getArgument().str();
  t.names.emplace(pass, owner->getName().str());
  Entry *&entry = t.byPass[pass][name];
  if (!entry) {
    entry = &t.entries.emplace_back();
    entry->description = description;
  }
  value = &entry->value;
}

void moe_mlir::handlePassStatisticsFlag(int &argc, char **argv) {
  // --mlir-pass-statistics[=true|1|false|0] sets the report; the display
  // flag goes with it (the report has one layout, the list). Arguments after
  // "--" are positional and stay.
  bool given = false;
  bool positional = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    llvm::StringRef arg(argv[i]);
    llvm::StringRef flag = arg.ltrim('-');
    if (!positional && arg == "--") {
      positional = true;
    } else if (!positional && arg.starts_with("-")) {
      auto [name, value] = flag.split('=');
      if (name == "mlir-pass-statistics" &&
          (value.empty() || value == "true" || value == "1" ||
           value == "false" || value == "0")) {
        given = value.empty() || value == "true" || value == "1";
        continue;
      }
      if (name == "mlir-pass-statistics-display")
        continue;
    }
    argv[out++] = argv[i];
  }
  argc = out;
  argv[argc] = nullptr;
  if (!given)
    return;
  table().enabled = true;
  // Constructed now, so that it is destroyed after the exit handler runs.
  (void)llvm::errs();
  std::atexit([] { printPassStatistics(llvm::errs()); });
}

bool moe_mlir::passStatisticsEnabled() { return table().enabled; }

void moe_mlir::addPassStatisticsInstrumentation(mlir::PassManager &pm) {
  if (passStatisticsEnabled())
    pm.addInstrumentation(std::make_unique<RanPasses>());
}

void moe_mlir::printPassStatistics(llvm::raw_ostream &os) {
  Table &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  os << "===" << std::string(73, '-') << "===\n"
     << "                         ... Pass statistics report ...\n"
     << "===" << std::string(73, '-') << "===\n";
  for (auto &[pass, stats] : t.byPass) {
    if (!t.ran.count(pass))
      continue;
    os << t.names[pass] << " (" << pass << ")\n";
    size_t width = 0;
    for (auto &[name, entry] : stats)
      width = std::max(width, std::to_string(entry->value.load()).size());
    for (auto &[name, entry] : stats) {
      std::string value = std::to_string(entry->value.load());
      os << "  (S) " << std::string(width - value.size(), ' ') << value << ' '
         << name << " - " << entry->description << '\n';
    }
  }
  os.flush();
}
