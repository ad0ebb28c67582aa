//===- ToolOptions.h - the option category of the tools ---------*- C++ -*-===//
//
// Part of moe-mlir.
//
// Every tool puts its own flags in one category and hides the rest from
// --help: the hundreds of LLVM and MLIR flags linked into the tools stay
// accepted and are listed by --help-hidden.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLS_TOOLOPTIONS_H
#define MOE_MLIR_TOOLS_TOOLOPTIONS_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/CommandLine.h"

#include <initializer_list>

namespace moe_mlir::flags {

/// The category of a tool's own flags (a function, so that flags of any
/// translation unit can use it during static initialization).
inline llvm::cl::OptionCategory &toolOptions() {
  static llvm::cl::OptionCategory category("moe-mlir options");
  return category;
}

/// Hides every flag outside toolOptions() from --help, except the
/// registered flags named in `alsoShown` (e.g. MLIR's --mlir-timing).
/// Call before parsing the command line.
inline void showToolOptions(std::initializer_list<llvm::StringRef> alsoShown =
                                {}) {
  auto &registered = llvm::cl::getRegisteredOptions();
  for (llvm::StringRef name : alsoShown) {
    auto it = registered.find(name);
    if (it != registered.end())
      it->second->addCategory(toolOptions());
  }
  llvm::cl::HideUnrelatedOptions(toolOptions());
}

} // namespace moe_mlir::flags

#endif // MOE_MLIR_TOOLS_TOOLOPTIONS_H
