//===- Mpi.cpp - MPI all-to-all backend -----------------------------------===//
//
// Part of moe-mlir's runtime (plain C++17 + MPI, no MLIR/LLVM).
//
// One rank per process of MPI_COMM_WORLD. The handle duplicates the world
// communicator twice (MPI_Comm_idup, polled): `data` carries the exchanges,
// `ctrl` carries "I am leaving" notices. Errors return (MPI_ERRORS_RETURN).
//
// An exchange is two rounds of nonblocking point-to-point messages, each
// polled with MPI_Testall against a deadline:
//   1. meta: every rank sends every peer (rows it sends, rows it expects or
//      -1, row bytes); the pairs are checked on both sides, so a mismatch is
//      known to exactly the two ranks involved, which then skip that pair;
//   2. rows: Irecv/Isend per peer straight from/to the caller's buffers (the
//      own rows are one memcpy), split in messages of at most 1 GiB so that
//      64-bit byte counts never overflow MPI's int counts.
// Peer identification on timeout comes from which requests are incomplete.
//
// Leaving (moeA2AAbort, moeA2ADestroy, a timeout, a lost peer, or process
// exit before moeA2ADestroy, through an atexit hook) sends every peer a
// notice on `ctrl` holding the number of exchanges this rank completed and
// the reason. Each wait polls a standing receive on `ctrl`; a notice from a
// rank that did not complete the current exchange fails the wait at once
// with MOE_A2A_PEER_LOST (a rank that left after completing it has sent its
// rows already, so the wait goes on). A process killed without notice is
// covered by the deadline (and by mpirun, which ends the job).
//
//===----------------------------------------------------------------------===//

#include "A2AImpl.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <set>

#include <sched.h>

using namespace moe_a2a;

namespace {

constexpr int kMetaTag = 11;
constexpr int kDataTag = 12;
constexpr int kCtrlTag = 13;
constexpr int64_t kChunkBytes = int64_t(1) << 30; // < INT_MAX

struct CtrlMsg {
  int64_t completed; // exchanges the sender completed
  int64_t rootCause; // 1: the sender's own fault or end; 0: it left
                     // because of another rank
  char reason[240];
};

std::string mpiErrorText(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(buf, static_cast<size_t>(len));
}

/// Calls MPI_Init when MPI is not initialized yet. Returns false (and a
/// message) when MPI was finalized or cannot start.
bool ensureMpi(bool *weInit, std::string *error) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    *error = "MPI was already finalized";
    return false;
  }
  *weInit = false;
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED,
                             &provided);
    if (rc != MPI_SUCCESS) {
      *error = "MPI_Init failed: " + mpiErrorText(rc);
      return false;
    }
    *weInit = true;
  }
  return true;
}

/// Duplicates MPI_COMM_WORLD without blocking past the deadline.
bool dupWorld(MPI_Comm *out, Clock::time_point deadline, double timeout,
              std::string *error) {
  MPI_Request req;
  int rc = MPI_Comm_idup(MPI_COMM_WORLD, out, &req);
  if (rc != MPI_SUCCESS) {
    *error = "MPI_Comm_idup failed: " + mpiErrorText(rc);
    return false;
  }
  for (;;) {
    int flag = 0;
    rc = MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      *error = "MPI_Comm_idup failed: " + mpiErrorText(rc);
      return false;
    }
    if (flag)
      break;
    if (Clock::now() > deadline) {
      *error = "not every rank of MPI_COMM_WORLD created its handle within " +
               formatSeconds(timeout);
      return false;
    }
  }
  MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
  return true;
}

struct GrowBuffer {
  ~GrowBuffer() {
    if (data)
      ::operator delete(data, std::align_val_t(64));
  }
  void reserve(int64_t bytes) {
    if (bytes <= capacity)
      return;
    int64_t grown = capacity + capacity / 4;
    int64_t want = bytes > grown ? bytes : grown;
    void *fresh =
        ::operator new(static_cast<size_t>(want), std::align_val_t(64));
    if (data)
      ::operator delete(data, std::align_val_t(64));
    data = static_cast<char *>(fresh);
    capacity = want;
  }
  char *data = nullptr;
  int64_t capacity = 0;
};

class MpiRank;
std::mutex liveMutex;
std::set<MpiRank *> liveRanks;
bool atexitInstalled = false;
void leaveAllAtExit();

class MpiRank final : public MoeA2A {
public:
  MpiRank(int rank, int size, double timeout, MPI_Comm data, MPI_Comm ctrl,
          bool weInit)
      : MoeA2A(rank, size, timeout), data(data), ctrl(ctrl), weInit(weInit),
        lostCompleted(size, -1), lostRoot(size, 0), lostReason(size), sendMeta(3 * size),
        recvMeta(3 * size) {
    postCtrlRecv();
    std::lock_guard<std::mutex> lock(liveMutex);
    liveRanks.insert(this);
  }

  ~MpiRank() override {
    {
      std::lock_guard<std::mutex> lock(liveMutex);
      liveRanks.erase(this);
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
      return;
    bool healthy = !left && deadStatus == MOE_A2A_OK;
    leave("handle destroyed", completed, healthy);
    flushCtrlSends(std::min(timeoutSeconds, 5.0));
    if (ctrlReq != MPI_REQUEST_NULL) {
      MPI_Cancel(&ctrlReq);
      MPI_Request_free(&ctrlReq);
    }
    if (healthy)
      MPI_Comm_free(&data);
    // `ctrl` is not freed: peers' leave notices may still arrive on it, and
    // MPI_Finalize reclaims it.
    if (weInit && healthy)
      MPI_Finalize();
  }

  const char *backend() const override { return "mpi"; }
  int64_t recvCapacity() const override { return recvBuf.capacity; }

  const void *receivedRows() const override { return recvBuf.data; }

  void abort(const std::string &reason) override {
    if (!left) {
      leave(reason, completed, true);
      deadStatus = MOE_A2A_ERROR;
      deadMessage = "rank " + std::to_string(rank) + ": left the group (" +
                    reason + ")";
    }
    flushCtrlSends(1.0);
  }

  /// The atexit hook: the process ends without moeA2ADestroy.
  void exitHook() {
    if (left)
      return;
    leave("process exited before moeA2ADestroy", completed, true);
    flushCtrlSends(1.0);
  }

private:
  void postCtrlRecv() {
    int rc = MPI_Irecv(&ctrlIn, sizeof(CtrlMsg), MPI_BYTE, MPI_ANY_SOURCE,
                       kCtrlTag, ctrl, &ctrlReq);
    if (rc != MPI_SUCCESS)
      ctrlReq = MPI_REQUEST_NULL;
  }

  /// Reads the leave notices that have arrived.
  void pollCtrl() {
    while (ctrlReq != MPI_REQUEST_NULL) {
      int flag = 0;
      MPI_Status status;
      if (MPI_Test(&ctrlReq, &flag, &status) != MPI_SUCCESS || !flag)
        return;
      int src = status.MPI_SOURCE;
      if (src >= 0 && src < size && lostCompleted[src] < 0) {
        lostCompleted[src] = ctrlIn.completed;
        lostRoot[src] = ctrlIn.rootCause != 0;
        ctrlIn.reason[sizeof(ctrlIn.reason) - 1] = 0;
        lostReason[src] = ctrlIn.reason;
      }
      postCtrlRecv();
    }
  }

  /// Sends the leave notice to every peer (once).
  void leave(const std::string &reason, uint64_t completedSteps,
             bool rootCause) {
    if (left)
      return;
    left = true;
    CtrlMsg &msg = ctrlOut;
    std::memset(&msg, 0, sizeof(msg));
    msg.completed = static_cast<int64_t>(completedSteps);
    msg.rootCause = rootCause ? 1 : 0;
    std::string text = "rank " + std::to_string(rank) + ": " + reason;
    std::strncpy(msg.reason, text.c_str(), sizeof(msg.reason) - 1);
    for (int p = 0; p < size; ++p) {
      if (p == rank)
        continue;
      MPI_Request req;
      if (MPI_Isend(&ctrlOut, sizeof(CtrlMsg), MPI_BYTE, p, kCtrlTag, ctrl,
                    &req) == MPI_SUCCESS)
        ctrlSends.push_back(req);
    }
  }

  void flushCtrlSends(double seconds) {
    auto deadline = deadlineAfter(seconds);
    while (!ctrlSends.empty()) {
      int flag = 0;
      if (MPI_Testall(static_cast<int>(ctrlSends.size()), ctrlSends.data(),
                      &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        break;
      if (flag) {
        ctrlSends.clear();
        return;
      }
      if (Clock::now() > deadline)
        break;
    }
    for (MPI_Request &r : ctrlSends)
      if (r != MPI_REQUEST_NULL)
        MPI_Request_free(&r);
    ctrlSends.clear();
  }

  MoeA2AStatus die(MoeA2AStatus status, const std::string &what) {
    fail(status, what);
    deadStatus = status;
    deadMessage = error;
    // Receives into our buffers must not complete later; sends finish or
    // are dropped by MPI.
    for (size_t i = 0; i < reqs.size(); ++i)
      if (reqs[i] != MPI_REQUEST_NULL) {
        if (reqIsRecv[i])
          MPI_Cancel(&reqs[i]);
        MPI_Request_free(&reqs[i]);
      }
    reqs.clear();
    // Peers waiting for us must hear of it; a lost peer has told everyone
    // itself, and our own notice follows at moeA2ADestroy.
    if (status != MOE_A2A_PEER_LOST) {
      leave(what, completed, true);
      flushCtrlSends(1.0);
    }
    return status;
  }

  /// Waits for every request in `reqs`; `what` names the round.
  MoeA2AStatus waitAll(const char *what) {
    const auto deadline = deadlineAfter(timeoutSeconds);
    const int n = static_cast<int>(reqs.size());
    for (unsigned spin = 0;; ++spin) {
      int flag = 0;
      int rc = MPI_Testall(n, reqs.data(), &flag, MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS)
        return die(MOE_A2A_ERROR, std::string("MPI failed in the ") + what +
                                      " round: " + mpiErrorText(rc));
      if (flag) {
        reqs.clear();
        return MOE_A2A_OK;
      }
      // Oversubscribed ranks (more ranks than cores) must let the others
      // run: after a short spin, yield between polls.
      if (spin > 256)
        sched_yield();
      if ((spin & 15) != 0)
        continue;
      pollCtrl();
      int lost = -1; // prefer a rank that left on its own account
      for (int p = 0; p < size; ++p)
        if (lostCompleted[p] >= 0 &&
            static_cast<uint64_t>(lostCompleted[p]) < steps &&
            (lost < 0 || (lostRoot[p] && !lostRoot[lost])))
          lost = p;
      if (lost >= 0)
        return die(MOE_A2A_PEER_LOST, "rank " + std::to_string(lost) +
                                          " left the group (" +
                                          lostReason[lost] + ")");
      if (Clock::now() > deadline) {
        std::vector<int> missing;
        for (int i = 0; i < n; ++i) {
          int done = 0;
          if (reqs[i] == MPI_REQUEST_NULL)
            continue;
          MPI_Request_get_status(reqs[i], &done, MPI_STATUS_IGNORE);
          if (!done && (missing.empty() || missing.back() != reqPeer[i]))
            missing.push_back(reqPeer[i]);
        }
        std::sort(missing.begin(), missing.end());
        missing.erase(std::unique(missing.begin(), missing.end()),
                      missing.end());
        if (missing.empty())
          continue;
        return die(MOE_A2A_TIMEOUT, "no answer from " + formatRanks(missing) +
                                        " within " +
                                        formatSeconds(timeoutSeconds) + " (" +
                                        what + " round)");
      }
    }
  }

  void addReq(MPI_Request r, int peer, bool isRecv) {
    reqs.push_back(r);
    reqPeer.resize(reqs.size());
    reqIsRecv.resize(reqs.size());
    reqPeer.back() = peer;
    reqIsRecv.back() = isRecv;
  }

  int postBytes(bool isRecv, char *buf, int64_t bytes, int peer) {
    while (bytes > 0) {
      int n = static_cast<int>(std::min(bytes, kChunkBytes));
      MPI_Request r;
      int rc = isRecv ? MPI_Irecv(buf, n, MPI_BYTE, peer, kDataTag, data, &r)
                      : MPI_Isend(buf, n, MPI_BYTE, peer, kDataTag, data, &r);
      if (rc != MPI_SUCCESS)
        return rc;
      addReq(r, peer, isRecv);
      buf += n;
      bytes -= n;
    }
    return MPI_SUCCESS;
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
    ++steps;
    if (!bad.empty())
      return die(MOE_A2A_ERROR, "invalid arguments: " + bad);

    // 1. meta round.
    for (int p = 0; p < size; ++p) {
      sendMeta[3 * p] = sendCounts[p];
      sendMeta[3 * p + 1] = expect ? expect[p] : -1;
      sendMeta[3 * p + 2] = rowBytes;
    }
    std::copy(&sendMeta[3 * rank], &sendMeta[3 * rank] + 3,
              &recvMeta[3 * rank]);
    reqs.clear();
    for (int p = 0; p < size; ++p) {
      if (p == rank)
        continue;
      MPI_Request r;
      int rc = MPI_Irecv(&recvMeta[3 * p], 3, MPI_INT64_T, p, kMetaTag, data,
                         &r);
      if (rc != MPI_SUCCESS)
        return die(MOE_A2A_ERROR, "MPI_Irecv from rank " + std::to_string(p) +
                                      " failed: " + mpiErrorText(rc));
      addReq(r, p, true);
    }
    for (int p = 0; p < size; ++p) {
      if (p == rank)
        continue;
      MPI_Request r;
      int rc =
          MPI_Isend(&sendMeta[3 * p], 3, MPI_INT64_T, p, kMetaTag, data, &r);
      if (rc != MPI_SUCCESS)
        return die(MOE_A2A_ERROR, "MPI_Isend to rank " + std::to_string(p) +
                                      " failed: " + mpiErrorText(rc));
      addReq(r, p, false);
    }
    if (MoeA2AStatus st = waitAll("counts"))
      return st;

    // Check the pairs this rank belongs to; a mismatched pair moves nothing
    // (both of its ranks see the same numbers and skip it).
    std::vector<char> skip(size, 0);
    std::string mismatch;
    int mismatches = 0;
    auto note = [&](int p, const std::string &m) {
      skip[p] = 1;
      if (mismatches++ == 0)
        mismatch = m;
    };
    const std::string rs = std::to_string(rank);
    for (int p = 0; p < size; ++p) {
      const int64_t theySend = recvMeta[3 * p], theyExpect = recvMeta[3 * p + 1],
                    theirRow = recvMeta[3 * p + 2];
      const std::string ps = std::to_string(p);
      if (theirRow != rowBytes) {
        note(p, "rank " + ps + " exchanges rows of " +
                    std::to_string(theirRow) + " bytes but rank " + rs +
                    " rows of " + std::to_string(rowBytes) + " bytes");
        continue;
      }
      if (expect && theySend != expect[p]) {
        note(p, "rank " + ps + " sends " + std::to_string(theySend) +
                    " rows to rank " + rs + " but rank " + rs + " expects " +
                    std::to_string(expect[p]));
        continue;
      }
      if (p != rank && theyExpect >= 0 && sendCounts[p] != theyExpect)
        note(p, "rank " + rs + " sends " + std::to_string(sendCounts[p]) +
                    " rows to rank " + ps + " but rank " + ps + " expects " +
                    std::to_string(theyExpect));
    }

    // 2. rows round.
    std::vector<int64_t> rows(size);
    int64_t total = 0;
    for (int p = 0; p < size; ++p) {
      rows[p] = skip[p] ? 0 : (expect ? expect[p] : recvMeta[3 * p]);
      total += expect ? expect[p] : rows[p];
      if (recvCounts)
        recvCounts[p] = rows[p];
    }
    if (!expect) {
      if (total > INT64_MAX / (rowBytes > 0 ? rowBytes : 1))
        return die(MOE_A2A_ERROR, "receive byte total overflows int64");
      try {
        recvBuf.reserve(total * rowBytes);
      } catch (const std::bad_alloc &) {
        return die(MOE_A2A_ERROR,
                   "out of memory for a receive buffer of " +
                       std::to_string(total * rowBytes) + " bytes");
      }
      userRecv = recvBuf.data;
    }
    int64_t dst = 0, src = 0;
    std::vector<int64_t> srcOff(size), dstOff(size);
    for (int p = 0; p < size; ++p) {
      srcOff[p] = src;
      dstOff[p] = dst;
      src += sendCounts[p];
      dst += expect ? expect[p] : rows[p];
    }
    // Peers in a shifted order (receive from rank-i, send to rank+i) so that
    // not every rank talks to rank 0 first.
    reqs.clear();
    for (int i = 1; i < size; ++i) {
      const int p = (rank - i + size) % size;
      if (rows[p] == 0 || rowBytes == 0)
        continue;
      int rc = postBytes(true, userRecv + dstOff[p] * rowBytes,
                         rows[p] * rowBytes, p);
      if (rc != MPI_SUCCESS)
        return die(MOE_A2A_ERROR, "MPI_Irecv from rank " + std::to_string(p) +
                                      " failed: " + mpiErrorText(rc));
    }
    for (int i = 1; i < size; ++i) {
      const int p = (rank + i) % size;
      if (skip[p] || sendCounts[p] == 0 || rowBytes == 0)
        continue;
      int rc = postBytes(false, const_cast<char *>(send) + srcOff[p] * rowBytes,
                         sendCounts[p] * rowBytes, p);
      if (rc != MPI_SUCCESS)
        return die(MOE_A2A_ERROR, "MPI_Isend to rank " + std::to_string(p) +
                                      " failed: " + mpiErrorText(rc));
    }
    if (!skip[rank] && rows[rank] > 0 && rowBytes > 0)
      std::memcpy(userRecv + dstOff[rank] * rowBytes,
                  send + srcOff[rank] * rowBytes,
                  static_cast<size_t>(rows[rank] * rowBytes));
    if (MoeA2AStatus st = waitAll("rows"))
      return st;

    ++completed;
    if (mismatches) {
      if (mismatches > 1)
        mismatch += " (and " + std::to_string(mismatches - 1) +
                    " more mismatched pairs)";
      return fail(MOE_A2A_ERROR, mismatch);
    }
    error.clear();
    return MOE_A2A_OK;
  }

  MPI_Comm data, ctrl;
  bool weInit;
  bool left = false;
  uint64_t steps = 0;     // exchanges started
  uint64_t completed = 0; // exchanges completed (a count mismatch included)
  MPI_Request ctrlReq = MPI_REQUEST_NULL;
  CtrlMsg ctrlIn{}, ctrlOut{};
  std::vector<MPI_Request> ctrlSends;
  std::vector<int64_t> lostCompleted;
  std::vector<char> lostRoot;
  std::vector<std::string> lostReason;
  std::vector<int64_t> sendMeta, recvMeta;
  std::vector<MPI_Request> reqs;
  std::vector<int> reqPeer;
  std::vector<char> reqIsRecv;
  GrowBuffer recvBuf;

  friend void leaveAllAtExit();
};

void leaveAllAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized)
    return;
  std::vector<MpiRank *> live;
  {
    std::lock_guard<std::mutex> lock(liveMutex);
    live.assign(liveRanks.begin(), liveRanks.end());
  }
  for (MpiRank *r : live)
    r->exitHook();
}

} // namespace

bool moe_a2a::haveMpi() { return true; }

MoeA2AStatus moe_a2a::createMpi(double timeoutSeconds, MoeA2A **out) {
  std::string err;
  bool weInit = false;
  if (!ensureMpi(&weInit, &err)) {
    setCreateError("moeA2ACreateMpi: " + err);
    return MOE_A2A_ERROR;
  }
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto deadline = deadlineAfter(timeoutSeconds);
  MPI_Comm data = MPI_COMM_NULL, ctrl = MPI_COMM_NULL;
  if (!dupWorld(&data, deadline, timeoutSeconds, &err) ||
      !dupWorld(&ctrl, deadline, timeoutSeconds, &err)) {
    setCreateError("moeA2ACreateMpi: rank " + std::to_string(rank) + ": " +
                   err);
    return MOE_A2A_ERROR;
  }
  {
    std::lock_guard<std::mutex> lock(liveMutex);
    if (!atexitInstalled) {
      atexitInstalled = true;
      std::atexit(leaveAllAtExit);
    }
  }
  *out = new MpiRank(rank, size, timeoutSeconds, data, ctrl, weInit);
  return MOE_A2A_OK;
}

bool moe_a2a::mpiWorldInfo(int *rank, int *size, std::string *error) {
  bool weInit = false;
  if (!ensureMpi(&weInit, error))
    return false;
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
  return true;
}

bool moe_a2a::mpiBroadcastBytes(void *buf, int bytes, std::string *error) {
  MPI_Request req;
  int rc = MPI_Ibcast(buf, bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    *error = "MPI_Ibcast failed: " + mpiErrorText(rc);
    return false;
  }
  auto deadline = deadlineAfter(resolveTimeout(0));
  for (;;) {
    int flag = 0;
    rc = MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      *error = "MPI_Ibcast failed: " + mpiErrorText(rc);
      return false;
    }
    if (flag)
      return true;
    if (Clock::now() > deadline) {
      *error = "rank 0 did not broadcast the NCCL id in time";
      return false;
    }
  }
}
