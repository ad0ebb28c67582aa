//===- ExpertParallel.cpp - run a model sharded over an EP group ----------===//
//
// Part of moe-mlir's runtime.
//
// The hooks of ExpertParallel.h over the all-to-all of AllToAll.h. Every
// row that moves carries an 8-byte header of two int32 values (the local
// slot and token * k + j on the way out, token * k + j on the way back),
// then the row, padded to 8 bytes: one record per row, records grouped by
// peer rank as the exchanges want them.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/ExpertParallel.h"
#include "moe-mlir/Runtime/AllToAll.h"

#include <atomic>
#include <climits>
#include <cstring>
#include <vector>

using namespace moe_rt;

namespace {

constexpr int64_t kHeaderBytes = 8;

thread_local ExpertParallelRank *currentRank = nullptr;
std::atomic<uint64_t> missingRankCalls{0};
std::atomic<uint64_t> failures{0};

int64_t recordBytes(int64_t rowBytes) {
  return kHeaderBytes + (rowBytes + 7) / 8 * 8;
}

void writeHeader(uint8_t *record, int32_t a, int32_t b) {
  std::memcpy(record, &a, 4);
  std::memcpy(record + 4, &b, 4);
}

void readHeader(const uint8_t *record, int32_t &a, int32_t &b) {
  std::memcpy(&a, record, 4);
  std::memcpy(&b, record + 4, 4);
}

std::string str(int64_t v) { return std::to_string(v); }

/// offsets[r] = Σ_{r' < r} counts[r'] (where rank r's records start in a
/// send buffer grouped by rank); returns the total.
int64_t exclusiveOffsets(const std::vector<int64_t> &counts,
                         std::vector<int64_t> &offsets) {
  offsets.assign(counts.size(), 0);
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    offsets[r] = total;
    total += counts[r];
  }
  return total;
}

} // namespace

struct ExpertParallelRank::Impl {
  MoeA2A *comm = nullptr;
  int rank = 0;
  int size = 1;
  std::string error;
  uint64_t failureOrder = 0;

  // The last dispatch, for combineBack.
  bool dispatched = false;
  int64_t tokens = 0, k = 0, received = 0;
  std::vector<int64_t> sentTo, receivedFrom; // rows per peer rank
  std::vector<int32_t> sortedFrom;           // source rank of sorted row i
  std::vector<int32_t> sortedSource;         // token * k + j of sorted row i

  // Buffers reused from step to step (grown, never shrunk).
  std::vector<uint8_t> sendBuffer, recvBuffer;
  std::vector<int64_t> sendCounts, recvCounts, offsets;

  int64_t homeBegin(int r, int64_t tokens) const {
    return moeEpHomeBegin(r, tokens, size);
  }

  uint8_t *sendSpace(int64_t bytes) {
    if (static_cast<int64_t>(sendBuffer.size()) < bytes)
      sendBuffer.resize(static_cast<size_t>(bytes));
    return sendBuffer.data();
  }
  uint8_t *recvSpace(int64_t bytes) {
    if (static_cast<int64_t>(recvBuffer.size()) < bytes)
      recvBuffer.resize(static_cast<size_t>(bytes));
    return recvBuffer.data();
  }

  void fail(const std::string &message) {
    if (!error.empty())
      return;
    error = "expert parallel rank " + str(rank) + ": " + message;
    failureOrder = ++failures;
    // The peers' messages say "rank R left the group (rank R: <message>)".
    moeA2AAbort(comm, message.c_str());
  }

  /// The handle's error without its own "rank R: " prefix.
  void failExchange(const char *what) {
    std::string message = moeA2AError(comm);
    std::string prefix = "rank " + str(rank) + ": ";
    if (message.compare(0, prefix.size(), prefix) == 0)
      message.erase(0, prefix.size());
    if (message.empty())
      message = "the exchange failed";
    fail(std::string(what) + ": " + message);
  }

  int64_t dispatch(const uint8_t *x, int64_t tokens, int64_t rowBytes,
                   const int32_t *slots, int64_t k, int64_t slotsPerRank,
                   uint8_t *rows, int32_t *counts, int32_t *source);
  void combineBack(const uint8_t *expertOut, const int32_t *source,
                   int64_t tokens, int64_t k, int64_t rowBytes, uint8_t *home);
  void allGather(const uint8_t *home, int64_t tokens, int64_t rowBytes,
                 uint8_t *out);
};

int64_t ExpertParallelRank::Impl::dispatch(const uint8_t *x, int64_t tokens,
                                           int64_t rowBytes,
                                           const int32_t *slots, int64_t k,
                                           int64_t slotsPerRank, uint8_t *rows,
                                           int32_t *counts, int32_t *source) {
  dispatched = false;
  if (!error.empty())
    return 0;
  if (tokens < 0 || k < 1 || rowBytes < 0 || slotsPerRank < 1 ||
      tokens > INT32_MAX / k || slotsPerRank > INT32_MAX / size) {
    fail("dispatch: bad arguments (tokens " + str(tokens) + ", k " + str(k) +
         ", row bytes " + str(rowBytes) + ", slots per rank " +
         str(slotsPerRank) + ")");
    return 0;
  }
  int64_t assignments = tokens * k;
  if (assignments > 0 &&
      (!slots || !source || !counts || (rowBytes > 0 && (!x || !rows)))) {
    fail("dispatch: a NULL buffer");
    return 0;
  }
  int64_t record = recordBytes(rowBytes);
  int64_t begin = homeBegin(rank, tokens), end = homeBegin(rank + 1, tokens);
  int64_t allSlots = slotsPerRank * size;

  // Rows per destination rank, then the records in (token, j) order.
  sendCounts.assign(size, 0);
  for (int64_t i = begin * k; i < end * k; ++i) {
    int32_t slot = slots[i];
    if (slot < 0)
      continue;
    if (slot >= allSlots) {
      fail("dispatch: slot " + str(slot) + " of token " + str(i / k) +
           " (choice " + str(i % k) + ") is outside the " + str(size) +
           " ranks x " + str(slotsPerRank) + " slots");
      return 0;
    }
    ++sendCounts[slot / slotsPerRank];
  }
  int64_t sent = exclusiveOffsets(sendCounts, offsets);
  uint8_t *send = sendSpace(sent * record);
  for (int64_t i = begin * k; i < end * k; ++i) {
    int32_t slot = slots[i];
    if (slot < 0)
      continue;
    uint8_t *at = send + offsets[slot / slotsPerRank]++ * record;
    writeHeader(at, static_cast<int32_t>(slot % slotsPerRank),
                static_cast<int32_t>(i));
    if (rowBytes)
      std::memcpy(at + kHeaderBytes, x + (i / k) * rowBytes,
                  static_cast<size_t>(rowBytes));
  }

  const void *recvRows = nullptr;
  recvCounts.assign(size, 0);
  if (moeA2AExchange(comm, send, sendCounts.data(), record, &recvRows,
                     recvCounts.data()) != MOE_A2A_OK) {
    failExchange("dispatch");
    return 0;
  }
  int64_t total = 0;
  for (int r = 0; r < size; ++r)
    total += recvCounts[r];
  if (total > assignments) {
    fail("dispatch: received " + str(total) + " rows for " + str(tokens) +
         " tokens x " + str(k) + " choices (the ranks disagree on the step)");
    return 0;
  }

  // A stable counting sort of the records by local slot: they arrive in
  // source-rank order, which is increasing (token, j) order.
  const auto *in = static_cast<const uint8_t *>(recvRows);
  std::vector<int64_t> &slotStart = offsets;
  slotStart.assign(slotsPerRank + 1, 0);
  int64_t index = 0;
  for (int r = 0; r < size; ++r) {
    int64_t from = homeBegin(r, tokens), to = homeBegin(r + 1, tokens);
    for (int64_t n = 0; n < recvCounts[r]; ++n, ++index) {
      int32_t local, assignment;
      readHeader(in + index * record, local, assignment);
      if (local < 0 || local >= slotsPerRank || assignment < from * k ||
          assignment >= to * k) {
        fail("dispatch: rank " + str(r) + " sent a row for slot " + str(local) +
             ", assignment " + str(assignment) +
             ", outside its home tokens or this rank's " + str(slotsPerRank) +
             " slots");
        return 0;
      }
      ++slotStart[local + 1];
    }
  }
  for (int64_t s = 0; s < slotsPerRank; ++s) {
    counts[s] = static_cast<int32_t>(slotStart[s + 1]);
    slotStart[s + 1] += slotStart[s];
  }
  sortedFrom.resize(static_cast<size_t>(total));
  sortedSource.resize(static_cast<size_t>(total));
  index = 0;
  for (int r = 0; r < size; ++r)
    for (int64_t n = 0; n < recvCounts[r]; ++n, ++index) {
      const uint8_t *at = in + index * record;
      int32_t local, assignment;
      readHeader(at, local, assignment);
      int64_t row = slotStart[local]++;
      if (rowBytes)
        std::memcpy(rows + row * rowBytes, at + kHeaderBytes,
                    static_cast<size_t>(rowBytes));
      source[row] = assignment;
      sortedSource[row] = assignment;
      sortedFrom[row] = r;
    }
  for (int64_t i = total; i < assignments; ++i)
    source[i] = -1;

  sentTo = sendCounts;
  receivedFrom = recvCounts;
  this->tokens = tokens;
  this->k = k;
  received = total;
  dispatched = true;
  return total;
}

void ExpertParallelRank::Impl::combineBack(const uint8_t *expertOut,
                                           const int32_t *source,
                                           int64_t tokens, int64_t k,
                                           int64_t rowBytes, uint8_t *home) {
  if (!error.empty())
    return;
  if (!dispatched || tokens != this->tokens || k != this->k || rowBytes < 0)
    return fail("combineBack of " + str(tokens) + " tokens x " + str(k) +
                " choices does not follow a dispatch of that step");
  if (received > 0 && ((rowBytes > 0 && !expertOut) || !source))
    return fail("combineBack: a NULL buffer");
  for (int64_t i = 0; i < received; ++i)
    if (source[i] != sortedSource[i])
      return fail("combineBack: source row " + str(i) + " is " +
                  str(source[i]) + ", the dispatch returned " +
                  str(sortedSource[i]));
  int64_t record = recordBytes(rowBytes);
  int64_t begin = homeBegin(rank, tokens);

  // The rows go back to the ranks they came from, grouped by rank.
  exclusiveOffsets(receivedFrom, offsets);
  uint8_t *send = sendSpace(received * record);
  for (int64_t i = 0; i < received; ++i) {
    uint8_t *out = send + offsets[sortedFrom[i]]++ * record;
    writeHeader(out, sortedSource[i], 0);
    if (rowBytes)
      std::memcpy(out + kHeaderBytes, expertOut + i * rowBytes,
                  static_cast<size_t>(rowBytes));
  }
  int64_t back = 0;
  for (int r = 0; r < size; ++r)
    back += sentTo[r];
  uint8_t *recv = recvSpace(back * record);
  if (moeA2AExchangeKnown(comm, send, receivedFrom.data(), sentTo.data(),
                          record, recv) != MOE_A2A_OK)
    return failExchange("combineBack");
  int64_t end = homeBegin(rank + 1, tokens);
  for (int64_t i = 0; i < back; ++i) {
    int32_t assignment, unused;
    readHeader(recv + i * record, assignment, unused);
    if (assignment < begin * k || assignment >= end * k)
      return fail("combineBack: received assignment " + str(assignment) +
                  ", not of this rank's home tokens [" + str(begin) + ", " +
                  str(end) + ")");
    if (rowBytes)
      std::memcpy(home + (assignment - begin * k) * rowBytes,
                  recv + i * record + kHeaderBytes,
                  static_cast<size_t>(rowBytes));
  }
}

void ExpertParallelRank::Impl::allGather(const uint8_t *home, int64_t tokens,
                                         int64_t rowBytes, uint8_t *out) {
  if (!error.empty())
    return;
  if (tokens < 0 || rowBytes < 0)
    return fail("allGather: bad arguments (tokens " + str(tokens) +
                ", row bytes " + str(rowBytes) + ")");
  int64_t begin = homeBegin(rank, tokens), end = homeBegin(rank + 1, tokens);
  int64_t mine = end - begin, homeBytes = mine * rowBytes;
  // Every rank gets a copy of this rank's rows: the exchange takes the send
  // rows grouped by destination.
  uint8_t *send = sendSpace(homeBytes * size);
  if (homeBytes)
    for (int r = 0; r < size; ++r)
      std::memcpy(send + r * homeBytes, home, static_cast<size_t>(homeBytes));
  sendCounts.assign(size, mine);
  recvCounts.resize(size);
  for (int r = 0; r < size; ++r)
    recvCounts[r] = homeBegin(r + 1, tokens) - homeBegin(r, tokens);
  if (moeA2AExchangeKnown(comm, send, sendCounts.data(), recvCounts.data(),
                          rowBytes, out) != MOE_A2A_OK)
    failExchange("allGather");
}

//===----------------------------------------------------------------------===//
// The hooks: the calling thread's current rank, zeros when it has none or
// it failed.
//===----------------------------------------------------------------------===//

namespace {

ExpertParallelRank::Impl *currentImpl();

void zeroDispatch(int64_t tokens, int64_t k, int64_t slotsPerRank,
                  int32_t *counts, int32_t *source) {
  if (counts && slotsPerRank > 0)
    std::memset(counts, 0, static_cast<size_t>(slotsPerRank) * 4);
  if (source && tokens > 0 && k > 0)
    for (int64_t i = 0; i < tokens * k; ++i)
      source[i] = -1;
}

int64_t hookRank() {
  ExpertParallelRank *rank = ExpertParallelRank::current();
  if (!rank) {
    ++missingRankCalls;
    return 0;
  }
  return rank->rank();
}

int64_t hookDispatch(const void *x, int64_t tokens, int64_t rowBytes,
                     const int32_t *slots, int64_t k, int64_t slotsPerRank,
                     void *rows, int32_t *counts, int32_t *source) {
  ExpertParallelRank::Impl *impl = currentImpl();
  int64_t total = 0;
  if (impl)
    total = impl->dispatch(static_cast<const uint8_t *>(x), tokens, rowBytes,
                           slots, k, slotsPerRank, static_cast<uint8_t *>(rows),
                           counts, source);
  if (!impl || !impl->error.empty()) {
    zeroDispatch(tokens, k, slotsPerRank, counts, source);
    return 0;
  }
  return total;
}

void hookCombineBack(const void *expertOut, const int32_t *source,
                     int64_t tokens, int64_t k, int64_t rowBytes, void *home) {
  ExpertParallelRank::Impl *impl = currentImpl();
  // Without a rank the size of `home` is unknown: nothing is written.
  if (!impl)
    return;
  int64_t homeRows = 0;
  if (tokens > 0 && k > 0 && rowBytes > 0 && home)
    homeRows = (impl->homeBegin(impl->rank + 1, tokens) -
                impl->homeBegin(impl->rank, tokens)) *
               k;
  if (homeRows)
    std::memset(home, 0, static_cast<size_t>(homeRows * rowBytes));
  impl->combineBack(static_cast<const uint8_t *>(expertOut), source, tokens, k,
                    rowBytes, static_cast<uint8_t *>(home));
  if (!impl->error.empty() && homeRows)
    std::memset(home, 0, static_cast<size_t>(homeRows * rowBytes));
}

void hookAllGather(const void *home, int64_t tokens, int64_t rowBytes,
                   void *out) {
  ExpertParallelRank::Impl *impl = currentImpl();
  if (impl)
    impl->allGather(static_cast<const uint8_t *>(home), tokens, rowBytes,
                    static_cast<uint8_t *>(out));
  if ((!impl || !impl->error.empty()) && out && tokens > 0 && rowBytes > 0)
    std::memset(out, 0, static_cast<size_t>(tokens * rowBytes));
}

const MoeEpHooks hooks = {hookRank, hookDispatch, hookCombineBack,
                          hookAllGather};

} // namespace

//===----------------------------------------------------------------------===//
// ExpertParallelRank
//===----------------------------------------------------------------------===//

ExpertParallelRank::ExpertParallelRank(MoeA2A *comm) : impl_(new Impl()) {
  impl_->comm = comm;
  impl_->rank = comm ? moeA2ARank(comm) : 0;
  impl_->size = comm ? moeA2ASize(comm) : 1;
  if (!comm)
    impl_->fail("no all-to-all handle");
}

ExpertParallelRank::~ExpertParallelRank() {
  if (currentRank == this)
    currentRank = nullptr;
}

int ExpertParallelRank::rank() const { return impl_->rank; }
int ExpertParallelRank::size() const { return impl_->size; }
const std::string &ExpertParallelRank::error() const { return impl_->error; }
MoeA2A *ExpertParallelRank::comm() const { return impl_->comm; }
uint64_t ExpertParallelRank::failureOrder() const {
  return impl_->failureOrder;
}
void ExpertParallelRank::fail(const std::string &message) {
  impl_->fail(message);
}

ExpertParallelRank::Scope::Scope(ExpertParallelRank &rank)
    : previous_(currentRank) {
  currentRank = &rank;
}

ExpertParallelRank::Scope::~Scope() { currentRank = previous_; }

ExpertParallelRank *ExpertParallelRank::current() { return currentRank; }

uint64_t ExpertParallelRank::callsWithoutRank() {
  return missingRankCalls.load();
}

namespace {
ExpertParallelRank::Impl *currentImpl() {
  ExpertParallelRank *rank = ExpertParallelRank::current();
  if (!rank) {
    ++missingRankCalls;
    return nullptr;
  }
  return rank->impl();
}
} // namespace

const MoeEpHooks *moe_rt::expertParallelHooks() { return &hooks; }
