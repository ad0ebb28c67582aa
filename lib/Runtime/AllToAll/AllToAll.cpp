//===- AllToAll.cpp - C entry points of the all-to-all runtime ------------===//
//
// Part of moe-mlir's runtime (plain C++17, no MLIR/LLVM).
//
// The C functions of AllToAll.h: they check what needs no peer (null
// handles, the rank count), never let an exception out (a failed
// allocation becomes MOE_A2A_ERROR with a message) and dispatch to the
// backend behind the handle. Shared helpers (timeouts, argument checks,
// message formatting) and the stubs of the backends that were not built are
// here too.
//
//===----------------------------------------------------------------------===//

#include "A2AImpl.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <new>

namespace moe_a2a {

namespace {
thread_local std::string createError;
} // namespace

void setCreateError(const std::string &message) { createError = message; }

double resolveTimeout(double timeoutSeconds) {
  if (timeoutSeconds > 0 && std::isfinite(timeoutSeconds))
    return timeoutSeconds;
  if (const char *env = std::getenv("MOE_EP_TIMEOUT_S")) {
    char *end = nullptr;
    double v = std::strtod(env, &end);
    if (end != env && v > 0 && std::isfinite(v))
      return v;
  }
  return 60.0;
}

std::string formatSeconds(double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g s", seconds);
  return buf;
}

std::string formatRanks(const std::vector<int> &ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i)
      out += ", ";
    out += std::to_string(ranks[i]);
  }
  return out;
}

std::string checkCounts(const int64_t *counts, int size, int64_t rowBytes,
                        const void *buffer, const char *what,
                        int64_t *totalRows) {
  *totalRows = 0;
  if (rowBytes < 0)
    return "rowBytes is negative (" + std::to_string(rowBytes) + ")";
  if (!counts)
    return std::string(what) + " counts are NULL";
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    if (counts[r] < 0)
      return std::string(what) + " count for rank " + std::to_string(r) +
             " is negative (" + std::to_string(counts[r]) + ")";
    if (counts[r] > std::numeric_limits<int64_t>::max() - total)
      return std::string(what) + " row total overflows int64";
    total += counts[r];
  }
  if (rowBytes > 0 && total > std::numeric_limits<int64_t>::max() / rowBytes)
    return std::string(what) + " byte total (" + std::to_string(total) +
           " rows of " + std::to_string(rowBytes) + " bytes) overflows int64";
  if (total > 0 && rowBytes > 0 && !buffer)
    return std::string(what) + " buffer is NULL but " + std::to_string(total) +
           " rows of " + std::to_string(rowBytes) + " bytes move";
  *totalRows = total;
  return "";
}

#ifndef MOE_A2A_HAVE_MPI
MoeA2AStatus createMpi(double, MoeA2A **out) {
  *out = nullptr;
  setCreateError("moeA2ACreateMpi: moe-mlir was built without MPI (install "
                 "libopenmpi-dev and reconfigure with "
                 "-DMOE_MLIR_ENABLE_MPI=ON)");
  return MOE_A2A_ERROR;
}
bool haveMpi() { return false; }
bool mpiWorldInfo(int *, int *, std::string *error) {
  *error = "moe-mlir was built without MPI";
  return false;
}
bool mpiBroadcastBytes(void *, int, std::string *error) {
  *error = "moe-mlir was built without MPI";
  return false;
}
#endif

#ifndef MOE_A2A_HAVE_NCCL
MoeA2AStatus createNccl(int, int, int, const char *, double, MoeA2A **out) {
  *out = nullptr;
  setCreateError("moeA2ACreateNccl: moe-mlir was built without CUDA and "
                 "NCCL (the NCCL backend needs nccl.h and libnccl)");
  return MOE_A2A_ERROR;
}
bool haveNccl() { return false; }
#endif

} // namespace moe_a2a

using namespace moe_a2a;

namespace {

/// Runs `fn` with exceptions kept inside: a failed allocation or any other
/// exception becomes MOE_A2A_ERROR with a message on the handle.
template <typename Fn>
MoeA2AStatus guarded(MoeA2A *c, const char *fnName, Fn &&fn) {
  if (!c) {
    setCreateError(std::string(fnName) + ": NULL handle");
    return MOE_A2A_ERROR;
  }
  try {
    return fn();
  } catch (const std::bad_alloc &) {
    return c->fail(MOE_A2A_ERROR, std::string(fnName) + ": out of memory");
  } catch (const std::exception &e) {
    return c->fail(MOE_A2A_ERROR, std::string(fnName) + ": " + e.what());
  } catch (...) {
    return c->fail(MOE_A2A_ERROR, std::string(fnName) + ": unknown error");
  }
}

template <typename Fn> MoeA2AStatus guardedCreate(const char *fnName, Fn &&fn) {
  setCreateError("");
  try {
    return fn();
  } catch (const std::bad_alloc &) {
    setCreateError(std::string(fnName) + ": out of memory");
  } catch (const std::exception &e) {
    setCreateError(std::string(fnName) + ": " + e.what());
  } catch (...) {
    setCreateError(std::string(fnName) + ": unknown error");
  }
  return MOE_A2A_ERROR;
}

} // namespace

extern "C" {

MoeA2AStatus moeA2ACreateLocalGroup(int size, double timeoutSeconds,
                                    MoeA2A **ranks) {
  return guardedCreate("moeA2ACreateLocalGroup", [&] {
    if (!ranks) {
      setCreateError("moeA2ACreateLocalGroup: ranks is NULL");
      return MOE_A2A_ERROR;
    }
    if (size < 1) {
      setCreateError("moeA2ACreateLocalGroup: size must be >= 1, got " +
                     std::to_string(size));
      return MOE_A2A_ERROR;
    }
    return createLocal(size, resolveTimeout(timeoutSeconds), ranks);
  });
}

MoeA2AStatus moeA2ACreateMpi(double timeoutSeconds, MoeA2A **rank) {
  return guardedCreate("moeA2ACreateMpi", [&] {
    if (!rank) {
      setCreateError("moeA2ACreateMpi: rank is NULL");
      return MOE_A2A_ERROR;
    }
    *rank = nullptr;
    return createMpi(resolveTimeout(timeoutSeconds), rank);
  });
}

MoeA2AStatus moeA2ACreateNccl(int rank, int size, int device,
                              const char *idFile, double timeoutSeconds,
                              MoeA2A **out) {
  return guardedCreate("moeA2ACreateNccl", [&] {
    if (!out) {
      setCreateError("moeA2ACreateNccl: out is NULL");
      return MOE_A2A_ERROR;
    }
    *out = nullptr;
    return createNccl(rank, size, device, idFile,
                      resolveTimeout(timeoutSeconds), out);
  });
}

int moeA2ARank(const MoeA2A *c) { return c ? c->rank : -1; }
int moeA2ASize(const MoeA2A *c) { return c ? c->size : 0; }

MoeA2AStatus moeA2AExchange(MoeA2A *c, const void *send,
                            const int64_t *sendCounts, int64_t rowBytes,
                            const void **recv, int64_t *recvCounts) {
  return guarded(c, "moeA2AExchange", [&] {
    if (!recv || !recvCounts)
      return c->fail(MOE_A2A_ERROR,
                     "moeA2AExchange: recv or recvCounts is NULL");
    *recv = nullptr;
    return c->exchange(send, sendCounts, rowBytes, recv, recvCounts);
  });
}

MoeA2AStatus moeA2AExchangeKnown(MoeA2A *c, const void *send,
                                 const int64_t *sendCounts,
                                 const int64_t *recvCounts, int64_t rowBytes,
                                 void *recv) {
  return guarded(c, "moeA2AExchangeKnown", [&] {
    return c->exchangeKnown(send, sendCounts, recvCounts, rowBytes, recv);
  });
}

void moeA2AAbort(MoeA2A *c, const char *reason) {
  if (!c)
    return;
  try {
    c->abort(reason && *reason ? reason : "aborted");
  } catch (...) {
  }
}

const char *moeA2AError(const MoeA2A *c) {
  return c ? c->error.c_str() : createError.c_str();
}

void moeA2ADestroy(MoeA2A *c) {
  if (!c)
    return;
  try {
    delete c;
  } catch (...) {
  }
}

int64_t moeA2ARecvCapacity(const MoeA2A *c) {
  return c ? c->recvCapacity() : 0;
}

const char *moeA2ABackendName(const MoeA2A *c) {
  return c ? c->backend() : "";
}

double moeA2ATimeoutSeconds(const MoeA2A *c) {
  return c ? c->timeoutSeconds : 0.0;
}

int moeA2AHaveMpi(void) { return haveMpi() ? 1 : 0; }
int moeA2AHaveNccl(void) { return haveNccl() ? 1 : 0; }

} // extern "C"
