//===- Local.cpp - in-process all-to-all backend (threads) ----------------===//
//
// Part of moe-mlir's runtime (plain C++17, no MLIR/LLVM).
//
// The ranks are threads sharing one LocalGroup: a mutex, one condition
// variable and a slot per rank. An exchange is one step s of a lockstep
// protocol:
//   1. post:  the rank publishes its send buffer, counts, row size and (for
//             ExchangeKnown) its expected receive counts, and sets
//             posted = s;
//   2. meet:  it waits (timed) until every rank has posted step s; then it
//             checks the pairs it belongs to (row size, expected counts) and
//             copies the rows meant for it straight out of the peers' send
//             buffers (one copy, in source-rank order) outside the lock;
//   3. drain: it sets done = s and waits until every rank is done, so that
//             no peer still reads its send buffer when it returns.
// A rank that aborts, is destroyed or times out marks itself `left` (a
// rank timing out in step 2 also withdraws its post, so that a late peer
// never reads a buffer that was handed back): the others' waits see it at
// once and fail with MOE_A2A_PEER_LOST naming it and its reason. A count
// mismatch skips only the pairs involved; the step completes for everyone
// and the group stays usable.
//
//===----------------------------------------------------------------------===//

#include "A2AImpl.h"

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

using namespace moe_a2a;

namespace {

struct LocalGroup {
  struct Slot {
    uint64_t posted = 0; // last step whose buffers are published
    uint64_t done = 0;   // last step whose copies this rank finished
    const char *send = nullptr;
    const int64_t *sendCounts = nullptr;
    const int64_t *expect = nullptr; // ExchangeKnown's recvCounts, or null
    int64_t rowBytes = 0;
    bool left = false;
    uint64_t leftOrder = 0; // 1 for the first rank that left, 2 next, ...
    std::string leftReason; // "rank p: why"
  };
  uint64_t leaves = 0;
  explicit LocalGroup(int size) : slots(size) {}
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<Slot> slots;
};

/// Receive buffer: grown, never shrunk, 64-byte aligned.
struct GrowBuffer {
  ~GrowBuffer() { release(); }
  void reserve(int64_t bytes) {
    if (bytes <= capacity)
      return;
    int64_t grown = capacity + capacity / 4;
    int64_t want = bytes > grown ? bytes : grown;
    void *fresh = ::operator new(static_cast<size_t>(want), std::align_val_t(64));
    release();
    data = static_cast<char *>(fresh);
    capacity = want;
  }
  void release() {
    if (data)
      ::operator delete(data, std::align_val_t(64));
    data = nullptr;
    capacity = 0;
  }
  char *data = nullptr;
  int64_t capacity = 0;
};

class LocalRank final : public MoeA2A {
public:
  LocalRank(int rank, int size, double timeout,
            std::shared_ptr<LocalGroup> group)
      : MoeA2A(rank, size, timeout), group(std::move(group)) {}

  ~LocalRank() override { leave("handle destroyed before the group ended"); }

  const char *backend() const override { return "local"; }
  int64_t recvCapacity() const override { return recvBuf.capacity; }

  const void *receivedRows() const override { return recvBuf.data; }

  void abort(const std::string &reason) override {
    leave(reason);
    if (deadStatus == MOE_A2A_OK) {
      deadStatus = MOE_A2A_ERROR;
      deadMessage = "rank " + std::to_string(rank) + ": left the group (" +
                    reason + ")";
    }
  }

private:
  /// Marks this rank as gone (idempotent) and wakes the peers.
  void leave(const std::string &reason) {
    std::lock_guard<std::mutex> lock(group->mutex);
    LocalGroup::Slot &me = group->slots[rank];
    if (me.left)
      return;
    me.left = true;
    me.leftOrder = ++group->leaves;
    me.leftReason = "rank " + std::to_string(rank) + ": " + reason;
    group->changed.notify_all();
  }

  MoeA2AStatus die(MoeA2AStatus status, const std::string &what) {
    fail(status, what);
    deadStatus = status;
    deadMessage = error;
    return status;
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
    if (!bad.empty()) {
      // The peers cannot complete this step without us: leave, so that they
      // fail at once instead of waiting for the timeout.
      leave("invalid arguments: " + bad);
      return die(MOE_A2A_ERROR, "invalid arguments: " + bad);
    }

    std::unique_lock<std::mutex> lock(group->mutex);
    std::vector<LocalGroup::Slot> &slots = group->slots;
    LocalGroup::Slot &me = slots[rank];
    const uint64_t s = ++steps;
    me.send = send;
    me.sendCounts = sendCounts;
    me.expect = expect;
    me.rowBytes = rowBytes;
    me.posted = s;
    group->changed.notify_all();

    // 2. Meet: every rank has posted step s. A rank that left without
    // posting it ends the wait (the one that left first is named: the others
    // may have left because of it); so does the deadline.
    const auto deadline = deadlineAfter(timeoutSeconds);
    for (;;) {
      bool all = true;
      for (const auto &p : slots)
        all = all && p.posted >= s;
      if (all)
        break;
      int lost = -1;
      for (int p = 0; p < size; ++p)
        if (slots[p].left && slots[p].posted < s &&
            (lost < 0 || slots[p].leftOrder < slots[lost].leftOrder))
          lost = p;
      if (lost >= 0) {
        me.posted = s - 1; // nobody may read our buffer any more
        std::string msg = "rank " + std::to_string(lost) +
                          " left the group (" + slots[lost].leftReason + ")";
        lock.unlock();
        return die(MOE_A2A_PEER_LOST, msg);
      }
      if (Clock::now() >= deadline) {
        std::vector<int> missing;
        for (int p = 0; p < size; ++p)
          if (slots[p].posted < s)
            missing.push_back(p);
        me.posted = s - 1;
        std::string msg = "no answer from " + formatRanks(missing) +
                          " within " + formatSeconds(timeoutSeconds);
        lock.unlock();
        leave(msg);
        return die(MOE_A2A_TIMEOUT, msg);
      }
      group->changed.wait_until(lock, deadline);
    }

    // Check the pairs this rank belongs to; a mismatched pair moves nothing.
    std::vector<char> skip(size, 0);
    std::string mismatch;
    int mismatches = 0;
    auto note = [&](int p, const std::string &m) {
      skip[p] = 1;
      if (mismatches++ == 0)
        mismatch = m;
    };
    for (int p = 0; p < size; ++p) {
      const LocalGroup::Slot &q = slots[p];
      std::string rs = std::to_string(rank), ps = std::to_string(p);
      if (q.rowBytes != rowBytes) {
        note(p, "rank " + ps + " exchanges rows of " +
                    std::to_string(q.rowBytes) + " bytes but rank " + rs +
                    " rows of " + std::to_string(rowBytes) + " bytes");
        continue;
      }
      if (expect && q.sendCounts[rank] != expect[p]) {
        note(p, "rank " + ps + " sends " + std::to_string(q.sendCounts[rank]) +
                    " rows to rank " + rs + " but rank " + rs + " expects " +
                    std::to_string(expect[p]));
        continue;
      }
      if (q.expect && sendCounts[p] != q.expect[rank] && p != rank)
        note(p, "rank " + rs + " sends " + std::to_string(sendCounts[p]) +
                    " rows to rank " + ps + " but rank " + ps + " expects " +
                    std::to_string(q.expect[rank]));
    }
    lock.unlock();

    // Copy (outside the lock: the peers' buffers are stable until every
    // rank is done with this step).
    std::string copyError;
    try {
      if (!expect) {
        int64_t total = 0;
        for (int p = 0; p < size; ++p) {
          recvCounts[p] = skip[p] ? 0 : slots[p].sendCounts[rank];
          total += recvCounts[p];
        }
        recvBuf.reserve(total * rowBytes);
        userRecv = recvBuf.data;
      }
      int64_t dst = 0;
      for (int p = 0; p < size; ++p) {
        const LocalGroup::Slot &q = slots[p];
        int64_t rows = expect ? expect[p] : recvCounts[p];
        if (!skip[p] && rows > 0 && rowBytes > 0) {
          int64_t srcRow = 0;
          for (int r = 0; r < rank; ++r)
            srcRow += q.sendCounts[r];
          std::memcpy(userRecv + dst * rowBytes, q.send + srcRow * rowBytes,
                      static_cast<size_t>(rows * rowBytes));
        }
        dst += rows;
      }
    } catch (const std::bad_alloc &) {
      copyError = "out of memory for the receive buffer";
    }

    // 3. Drain: wait until no rank reads our buffer any more.
    lock.lock();
    me.done = s;
    group->changed.notify_all();
    const auto drainDeadline = deadlineAfter(timeoutSeconds);
    for (;;) {
      bool all = true;
      for (const auto &p : slots)
        all = all && p.done >= s;
      if (all)
        break;
      if (group->changed.wait_until(lock, drainDeadline) ==
          std::cv_status::timeout) {
        std::vector<int> missing;
        for (int p = 0; p < size; ++p)
          if (slots[p].done < s)
            missing.push_back(p);
        if (missing.empty())
          break;
        std::string msg = "no answer from " + formatRanks(missing) +
                          " within " + formatSeconds(timeoutSeconds) +
                          " (copying rows)";
        lock.unlock();
        leave(msg);
        return die(MOE_A2A_TIMEOUT, msg);
      }
    }
    lock.unlock();

    if (!copyError.empty())
      return fail(MOE_A2A_ERROR, copyError);
    if (mismatches) {
      if (mismatches > 1)
        mismatch += " (and " + std::to_string(mismatches - 1) +
                    " more mismatched pairs)";
      return fail(MOE_A2A_ERROR, mismatch);
    }
    error.clear();
    return MOE_A2A_OK;
  }

  std::shared_ptr<LocalGroup> group;
  uint64_t steps = 0;
  GrowBuffer recvBuf;
};

} // namespace

MoeA2AStatus moe_a2a::createLocal(int size, double timeoutSeconds,
                                  MoeA2A **ranks) {
  auto group = std::make_shared<LocalGroup>(size);
  std::vector<std::unique_ptr<LocalRank>> made;
  made.reserve(size);
  for (int r = 0; r < size; ++r)
    made.push_back(std::make_unique<LocalRank>(r, size, timeoutSeconds, group));
  for (int r = 0; r < size; ++r)
    ranks[r] = made[r].release();
  return MOE_A2A_OK;
}
