//===- A2AImpl.h - backend interface of the all-to-all runtime --*- C++ -*-===//
//
// Part of moe-mlir's runtime (internal header, plain C++17).
//
// Every backend derives from MoeA2A (the C interface's opaque handle) and
// implements the virtual functions below; AllToAll.cpp holds the C entry
// points, which check the arguments that need no peer, keep exceptions
// inside, and dispatch. Helpers shared by the backends (deadlines, default
// timeout, argument checks, message formatting) are here too.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_RUNTIME_ALLTOALL_A2AIMPL_H
#define MOE_MLIR_LIB_RUNTIME_ALLTOALL_A2AIMPL_H

#include "moe-mlir/Runtime/AllToAll.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

struct MoeA2A {
  MoeA2A(int rank, int size, double timeoutSeconds)
      : rank(rank), size(size), timeoutSeconds(timeoutSeconds) {}
  virtual ~MoeA2A() = default;
  MoeA2A(const MoeA2A &) = delete;
  MoeA2A &operator=(const MoeA2A &) = delete;

  virtual const char *backend() const = 0;
  virtual void abort(const std::string &reason) = 0;
  virtual int64_t recvCapacity() const = 0;

  /// One step of a backend's protocol. expect == null: moeA2AExchange
  /// (recvCounts is output, rows go to the handle's buffer, receivedRows());
  /// else moeA2AExchangeKnown (rows go to userRecv at offsets from expect).
  virtual MoeA2AStatus step(const void *send, const int64_t *sendCounts,
                            const int64_t *expect, int64_t rowBytes,
                            char *userRecv, int64_t *recvCounts) = 0;
  /// The handle's receive buffer (valid until the next step).
  virtual const void *receivedRows() const = 0;

  MoeA2AStatus exchange(const void *send, const int64_t *sendCounts,
                        int64_t rowBytes, const void **recv,
                        int64_t *recvCounts) {
    MoeA2AStatus st =
        step(send, sendCounts, nullptr, rowBytes, nullptr, recvCounts);
    *recv = receivedRows();
    return st;
  }
  MoeA2AStatus exchangeKnown(const void *send, const int64_t *sendCounts,
                             const int64_t *recvCounts, int64_t rowBytes,
                             void *recv) {
    return step(send, sendCounts, recvCounts, rowBytes,
                static_cast<char *>(recv), nullptr);
  }

  /// A handle that failed stays failed: true (with the error restored) when
  /// an earlier step put it out of the group.
  bool isDead() {
    if (deadStatus == MOE_A2A_OK)
      return false;
    error = deadMessage;
    return true;
  }

  /// Sets the one-line error "rank R: <what>" and returns `status`.
  MoeA2AStatus fail(MoeA2AStatus status, const std::string &what) {
    error = "rank " + std::to_string(rank) + ": " + what;
    return status;
  }

  const int rank;
  const int size;
  const double timeoutSeconds;
  std::string error;
  MoeA2AStatus deadStatus = MOE_A2A_OK;
  std::string deadMessage;
};

namespace moe_a2a {

using Clock = std::chrono::steady_clock;

/// timeoutSeconds <= 0: env MOE_EP_TIMEOUT_S, else 60.
double resolveTimeout(double timeoutSeconds);

inline Clock::time_point deadlineAfter(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

/// "5 s", "0.25 s".
std::string formatSeconds(double seconds);

/// "rank 2" or "ranks 2, 3".
std::string formatRanks(const std::vector<int> &ranks);

/// Checks counts (>= 0), rowBytes (>= 0), the byte total against int64
/// overflow, and non-null buffers where bytes move. On failure returns a
/// message (without the "rank R: " prefix); `what` is "send" or "receive".
std::string checkCounts(const int64_t *counts, int size, int64_t rowBytes,
                        const void *buffer, const char *what,
                        int64_t *totalRows);

/// The calling thread's last creation error (moeA2AError(NULL)).
void setCreateError(const std::string &message);

// Backend constructors (Mpi.cpp / Nccl.cpp or their stubs in AllToAll.cpp).
MoeA2AStatus createMpi(double timeoutSeconds, MoeA2A **out);
MoeA2AStatus createNccl(int rank, int size, int device, const char *idFile,
                        double timeoutSeconds, MoeA2A **out);
MoeA2AStatus createLocal(int size, double timeoutSeconds, MoeA2A **ranks);
bool haveMpi();
bool haveNccl();

/// MPI helpers the NCCL backend uses to take rank/size and share its id
/// (Mpi.cpp; errors when MPI was not built).
bool mpiWorldInfo(int *rank, int *size, std::string *error);
bool mpiBroadcastBytes(void *data, int bytes, std::string *error);

} // namespace moe_a2a

#endif // MOE_MLIR_LIB_RUNTIME_ALLTOALL_A2AIMPL_H
