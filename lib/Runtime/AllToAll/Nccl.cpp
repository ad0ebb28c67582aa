//===- Nccl.cpp - NCCL all-to-all backend (GPU buffers) -------------------===//
//
// Part of moe-mlir's runtime (plain C++17 + CUDA runtime + NCCL, no
// MLIR/LLVM). Built only when CUDA and NCCL are found.
//
// One rank per process and GPU. The communicator is created nonblocking
// (ncclConfig_t.blocking = 0) and every NCCL/CUDA wait is a poll of
// ncclCommGetAsyncError and cudaStreamQuery against the deadline; on
// timeout the communicator is aborted (ncclCommAbort), so nothing hangs.
// An exchange mirrors the MPI backend: a meta round (rows sent, rows
// expected or -1, row bytes per peer; int64, staged through pinned host
// memory) in one ncclGroupStart/End of ncclSend/ncclRecv, the pair checks,
// then a rows round of byte-typed ncclSend/ncclRecv (size_t counts: no int
// overflow) in one group on the handle's stream; the own rows are a
// device-to-device cudaMemcpyAsync. The receive buffer of moeA2AExchange is
// device memory, grown, never shrunk.
// NCCL offers no side channel: a peer that aborts or dies is seen when the
// deadline passes (or when NCCL reports the broken connection), not at
// once as with the local and MPI backends.
//
//===----------------------------------------------------------------------===//

#include "A2AImpl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <algorithm>
#include <memory>

#include <unistd.h>

using namespace moe_a2a;

namespace {

std::string cudaText(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

/// Polls until the communicator's pending operation finishes.
bool ncclSettle(ncclComm_t comm, Clock::time_point deadline,
                ncclResult_t *result) {
  for (;;) {
    ncclResult_t st = ncclSuccess;
    ncclResult_t rc = ncclCommGetAsyncError(comm, &st);
    if (rc != ncclSuccess) {
      *result = rc;
      return true;
    }
    if (st != ncclInProgress) {
      *result = st;
      return true;
    }
    if (Clock::now() > deadline)
      return false;
    std::this_thread::yield();
  }
}

class NcclRank final : public MoeA2A {
public:
  NcclRank(int rank, int size, double timeout, int device)
      : MoeA2A(rank, size, timeout), device(device), hostSend(nullptr),
        hostRecv(nullptr) {}

  ~NcclRank() override {
    cudaSetDevice(device);
    if (comm) {
      if (broken)
        ncclCommAbort(comm);
      else
        ncclCommDestroy(comm);
    }
    if (stream)
      cudaStreamDestroy(stream);
    cudaFree(devMeta);
    cudaFree(recvBuf);
    cudaFreeHost(hostSend);
    cudaFreeHost(hostRecv);
  }

  /// Creation steps that can fail; returns "" on success.
  std::string init(const ncclUniqueId &id) {
    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess)
      return "cudaSetDevice(" + std::to_string(device) + "): " + cudaText(ce);
    if ((ce = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) !=
            cudaSuccess ||
        (ce = cudaMalloc(&devMeta, sizeof(int64_t) * 6 * size)) !=
            cudaSuccess ||
        (ce = cudaMallocHost(&hostSend, sizeof(int64_t) * 3 * size)) !=
            cudaSuccess ||
        (ce = cudaMallocHost(&hostRecv, sizeof(int64_t) * 3 * size)) !=
            cudaSuccess)
      return "CUDA setup failed: " + cudaText(ce);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t rc = ncclCommInitRankConfig(&comm, size, id, rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress)
      return std::string("ncclCommInitRankConfig: ") + ncclGetErrorString(rc);
    ncclResult_t st;
    if (!ncclSettle(comm, deadlineAfter(timeoutSeconds), &st)) {
      broken = true;
      return "not every rank joined the NCCL communicator within " +
             formatSeconds(timeoutSeconds);
    }
    if (st != ncclSuccess) {
      broken = true;
      return std::string("ncclCommInitRankConfig: ") + ncclGetErrorString(st);
    }
    return "";
  }

  const char *backend() const override { return "nccl"; }
  int64_t recvCapacity() const override { return capacity; }

  const void *receivedRows() const override { return recvBuf; }

  void abort(const std::string &reason) override {
    if (!broken && comm)
      ncclCommAbort(comm);
    comm = nullptr;
    broken = true;
    if (deadStatus == MOE_A2A_OK) {
      deadStatus = MOE_A2A_ERROR;
      deadMessage = "rank " + std::to_string(rank) + ": left the group (" +
                    reason + ")";
    }
  }

private:
  MoeA2AStatus die(MoeA2AStatus status, const std::string &what) {
    fail(status, what);
    deadStatus = status;
    deadMessage = error;
    if (comm)
      ncclCommAbort(comm);
    comm = nullptr;
    broken = true;
    return status;
  }

  /// Waits for the group just issued and the stream.
  MoeA2AStatus wait(const char *what) {
    auto deadline = deadlineAfter(timeoutSeconds);
    ncclResult_t st;
    if (!ncclSettle(comm, deadline, &st))
      return die(MOE_A2A_TIMEOUT, std::string("the ") + what +
                                      " round did not finish within " +
                                      formatSeconds(timeoutSeconds) +
                                      " (a peer is missing or left)");
    if (st != ncclSuccess)
      return die(MOE_A2A_PEER_LOST, std::string("NCCL failed in the ") +
                                        what + " round: " +
                                        ncclGetErrorString(st));
    for (;;) {
      cudaError_t ce = cudaStreamQuery(stream);
      if (ce == cudaSuccess)
        return MOE_A2A_OK;
      if (ce != cudaErrorNotReady)
        return die(MOE_A2A_ERROR, std::string("CUDA failed in the ") + what +
                                      " round: " + cudaText(ce));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        return die(MOE_A2A_PEER_LOST, std::string("NCCL failed in the ") +
                                          what + " round: " +
                                          ncclGetErrorString(async));
      if (Clock::now() > deadline)
        return die(MOE_A2A_TIMEOUT, std::string("the ") + what +
                                        " round did not finish within " +
                                        formatSeconds(timeoutSeconds) +
                                        " (a peer is missing or left)");
      std::this_thread::yield();
    }
  }

  MoeA2AStatus check(ncclResult_t rc, const char *what) {
    if (rc == ncclSuccess || rc == ncclInProgress)
      return MOE_A2A_OK;
    return die(MOE_A2A_ERROR, std::string(what) + ": " + ncclGetErrorString(rc));
  }

  MoeA2AStatus step(const void *sendPtr, const int64_t *sendCounts,
                    const int64_t *expect, int64_t rowBytes, char *userRecv,
                    int64_t *recvCounts) override {
    if (isDead())
      return deadStatus;
    const char *send = static_cast<const char *>(sendPtr);
    int64_t sendTotal = 0, expectTotal = 0;
    std::string bad =
        checkCounts(sendCounts, size, rowBytes, send, "send", &sendTotal);
    if (bad.empty() && expect)
      bad = checkCounts(expect, size, rowBytes, userRecv, "receive",
                        &expectTotal);
    if (!bad.empty())
      return die(MOE_A2A_ERROR, "invalid arguments: " + bad);
    cudaSetDevice(device);

    // Meta round.
    for (int p = 0; p < size; ++p) {
      hostSend[3 * p] = sendCounts[p];
      hostSend[3 * p + 1] = expect ? expect[p] : -1;
      hostSend[3 * p + 2] = rowBytes;
    }
    int64_t *dSend = devMeta, *dRecv = devMeta + 3 * size;
    cudaMemcpyAsync(dSend, hostSend, sizeof(int64_t) * 3 * size,
                    cudaMemcpyHostToDevice, stream);
    if (MoeA2AStatus st = check(ncclGroupStart(), "ncclGroupStart"))
      return st;
    for (int p = 0; p < size; ++p) {
      ncclSend(dSend + 3 * p, 3, ncclInt64, p, comm, stream);
      ncclRecv(dRecv + 3 * p, 3, ncclInt64, p, comm, stream);
    }
    if (MoeA2AStatus st = check(ncclGroupEnd(), "ncclGroupEnd"))
      return st;
    cudaMemcpyAsync(hostRecv, dRecv, sizeof(int64_t) * 3 * size,
                    cudaMemcpyDeviceToHost, stream);
    if (MoeA2AStatus st = wait("counts"))
      return st;

    std::vector<char> skip(size, 0);
    std::string mismatch;
    int mismatches = 0;
    const std::string rs = std::to_string(rank);
    for (int p = 0; p < size; ++p) {
      const int64_t theySend = hostRecv[3 * p], theyExpect = hostRecv[3 * p + 1],
                    theirRow = hostRecv[3 * p + 2];
      const std::string ps = std::to_string(p);
      std::string m;
      if (theirRow != rowBytes)
        m = "rank " + ps + " exchanges rows of " + std::to_string(theirRow) +
            " bytes but rank " + rs + " rows of " + std::to_string(rowBytes) +
            " bytes";
      else if (expect && theySend != expect[p])
        m = "rank " + ps + " sends " + std::to_string(theySend) +
            " rows to rank " + rs + " but rank " + rs + " expects " +
            std::to_string(expect[p]);
      else if (p != rank && theyExpect >= 0 && sendCounts[p] != theyExpect)
        m = "rank " + rs + " sends " + std::to_string(sendCounts[p]) +
            " rows to rank " + ps + " but rank " + ps + " expects " +
            std::to_string(theyExpect);
      if (!m.empty()) {
        skip[p] = 1;
        if (mismatches++ == 0)
          mismatch = m;
      }
    }

    // Rows round.
    std::vector<int64_t> rows(size), srcOff(size), dstOff(size);
    int64_t total = 0, src = 0;
    for (int p = 0; p < size; ++p) {
      rows[p] = skip[p] ? 0 : (expect ? expect[p] : hostRecv[3 * p]);
      if (recvCounts)
        recvCounts[p] = rows[p];
      srcOff[p] = src;
      dstOff[p] = total;
      src += sendCounts[p];
      total += expect ? expect[p] : rows[p];
    }
    if (!expect) {
      int64_t bytes = total * rowBytes;
      if (bytes > capacity) {
        int64_t want = std::max(bytes, capacity + capacity / 4);
        void *fresh = nullptr;
        cudaError_t ce = cudaMalloc(&fresh, static_cast<size_t>(want));
        if (ce != cudaSuccess)
          return die(MOE_A2A_ERROR, "cudaMalloc of a " +
                                        std::to_string(want) +
                                        "-byte receive buffer: " +
                                        cudaText(ce));
        cudaFree(recvBuf);
        recvBuf = static_cast<char *>(fresh);
        capacity = want;
      }
      userRecv = recvBuf;
    }
    if (MoeA2AStatus st = check(ncclGroupStart(), "ncclGroupStart"))
      return st;
    for (int p = 0; p < size; ++p) {
      if (p == rank || rowBytes == 0)
        continue;
      if (rows[p] > 0)
        ncclRecv(userRecv + dstOff[p] * rowBytes,
                 static_cast<size_t>(rows[p] * rowBytes), ncclUint8, p, comm,
                 stream);
      if (!skip[p] && sendCounts[p] > 0)
        ncclSend(send + srcOff[p] * rowBytes,
                 static_cast<size_t>(sendCounts[p] * rowBytes), ncclUint8, p,
                 comm, stream);
    }
    if (MoeA2AStatus st = check(ncclGroupEnd(), "ncclGroupEnd"))
      return st;
    if (!skip[rank] && rows[rank] > 0 && rowBytes > 0)
      cudaMemcpyAsync(userRecv + dstOff[rank] * rowBytes,
                      send + srcOff[rank] * rowBytes,
                      static_cast<size_t>(rows[rank] * rowBytes),
                      cudaMemcpyDeviceToDevice, stream);
    if (MoeA2AStatus st = wait("rows"))
      return st;
    if (mismatches) {
      if (mismatches > 1)
        mismatch += " (and " + std::to_string(mismatches - 1) +
                    " more mismatched pairs)";
      return fail(MOE_A2A_ERROR, mismatch);
    }
    error.clear();
    return MOE_A2A_OK;
  }

  int device;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int64_t *devMeta = nullptr;
  int64_t *hostSend, *hostRecv;
  char *recvBuf = nullptr;
  int64_t capacity = 0;
  bool broken = false;
};

/// Rank 0 writes the id to `path` (a temporary file renamed into place);
/// the others wait for it until the deadline.
bool shareIdThroughFile(int rank, const char *path, ncclUniqueId *id,
                        double timeout, std::string *error) {
  std::string target = path;
  if (rank == 0) {
    std::string tmp = target + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(id->internal, sizeof(id->internal));
      if (!out) {
        *error = "cannot write the NCCL id to " + tmp;
        return false;
      }
    }
    if (std::rename(tmp.c_str(), target.c_str()) != 0) {
      *error = "cannot rename " + tmp + " to " + target + ": " +
               std::strerror(errno);
      return false;
    }
    return true;
  }
  auto deadline = deadlineAfter(timeout);
  for (;;) {
    std::ifstream in(target, std::ios::binary);
    if (in) {
      in.read(id->internal, sizeof(id->internal));
      if (in.gcount() == static_cast<std::streamsize>(sizeof(id->internal)))
        return true;
    }
    if (Clock::now() > deadline) {
      *error = "rank 0 did not write the NCCL id to " + target + " within " +
               formatSeconds(timeout);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

} // namespace

bool moe_a2a::haveNccl() { return true; }

MoeA2AStatus moe_a2a::createNccl(int rank, int size, int device,
                                 const char *idFile, double timeoutSeconds,
                                 MoeA2A **out) {
  std::string err;
  bool viaMpi = rank < 0 && size <= 0;
  if (viaMpi && !mpiWorldInfo(&rank, &size, &err)) {
    setCreateError("moeA2ACreateNccl: rank and size from MPI: " + err);
    return MOE_A2A_ERROR;
  }
  const std::string who = "moeA2ACreateNccl: rank " + std::to_string(rank);
  if (size < 1 || rank < 0 || rank >= size) {
    setCreateError("moeA2ACreateNccl: rank " + std::to_string(rank) +
                   " is not in [0, " + std::to_string(size) + ")");
    return MOE_A2A_ERROR;
  }
  if (!viaMpi && (!idFile || !*idFile)) {
    setCreateError(who + ": no file to exchange the NCCL id through");
    return MOE_A2A_ERROR;
  }
  int devices = 0;
  cudaError_t ce = cudaGetDeviceCount(&devices);
  if (ce != cudaSuccess || devices == 0) {
    setCreateError(who + ": no usable CUDA device (" +
                   (ce != cudaSuccess ? cudaText(ce)
                                      : std::string("0 devices")) +
                   ")");
    return MOE_A2A_ERROR;
  }
  if (device < 0)
    device = rank % devices;
  if (device >= devices) {
    setCreateError(who + ": CUDA device " + std::to_string(device) +
                   " does not exist (" + std::to_string(devices) +
                   " devices)");
    return MOE_A2A_ERROR;
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank == 0) {
    ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) {
      setCreateError(who + ": ncclGetUniqueId: " + ncclGetErrorString(rc));
      return MOE_A2A_ERROR;
    }
  }
  bool shared = viaMpi ? mpiBroadcastBytes(&id, sizeof(id), &err)
                       : shareIdThroughFile(rank, idFile, &id, timeoutSeconds,
                                            &err);
  if (!shared) {
    setCreateError(who + ": " + err);
    return MOE_A2A_ERROR;
  }
  auto handle = std::make_unique<NcclRank>(rank, size, timeoutSeconds, device);
  err = handle->init(id);
  if (!err.empty()) {
    setCreateError(who + ": " + err);
    return MOE_A2A_ERROR;
  }
  *out = handle.release();
  return MOE_A2A_OK;
}
