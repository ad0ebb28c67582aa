//===- a2a-test.cpp - tests of the ragged all-to-all runtime --------------===//
//
// Part of moe-mlir's tests (plain C++17, no LLVM/MLIR).
//
// Every check prints "FAIL: ..." when it fails; each rank (or the local
// driver) ends with "<who>: all N checks passed" and exits 0, or exits 1.
//   moe-a2a-test local            all local-backend checks (1..4 ranks,
//                                 ragged counts, order, buffer reuse, known
//                                 round trip, mismatch, abort, destroy,
//                                 invalid arguments, timeout)
//   moe-a2a-test mpi SCENARIO     one MPI scenario, run under mpirun:
//                                 basic | mismatch | abort | timeout | exit
//   moe-a2a-test nccl             NCCL backend without a GPU: a clear error
// The data of every step are a function of (step, source, destination, row)
// that every rank can recompute, so each rank checks its bytes itself.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/AllToAll.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifdef MOE_A2A_TEST_MPI
#include <mpi.h>
#endif

namespace {

std::mutex printMutex;
std::atomic<int> failures{0}, checks{0};

void check(bool ok, const std::string &what) {
  ++checks;
  if (ok)
    return;
  ++failures;
  std::lock_guard<std::mutex> lock(printMutex);
  std::printf("FAIL: %s\n", what.c_str());
  std::fflush(stdout);
}

bool contains(const char *text, const std::string &part) {
  return text && std::string(text).find(part) != std::string::npos;
}

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Rows that `src` sends to `dst` at `step` (small, with zeros, and a rank
/// that sends nothing on odd steps when there are several ranks).
int64_t countOf(int step, int src, int dst, int size, int64_t scale) {
  if (size > 1 && step % 2 == 1 && src == size - 1)
    return 0;
  uint64_t h = 1469598103934665603ull;
  for (int v : {step, src, dst, 7})
    h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
  int64_t c = static_cast<int64_t>((h >> 20) % 6); // 0..5
  if (c == 5)
    c = 0;
  // Growing then shrinking with the step.
  int64_t phase = step % 6 < 3 ? step % 6 + 1 : 6 - step % 6;
  return c * phase * scale;
}

uint8_t byteOf(int step, int src, int dst, int64_t row, int64_t b) {
  return static_cast<uint8_t>(step * 31 + src * 17 + dst * 5 + row * 3 + b);
}

/// One rank's checks of one step (Exchange then ExchangeKnown back).
void rankStep(MoeA2A *h, int step, int64_t scale, int64_t rowBytes,
              const std::string &who, int64_t *lastCapacity,
              const void **lastPtr, int64_t *lastBytes) {
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  std::vector<int64_t> sendCounts(size), recvCounts(size, -1);
  std::vector<uint8_t> send;
  for (int d = 0; d < size; ++d) {
    sendCounts[d] = countOf(step, rank, d, size, scale);
    for (int64_t r = 0; r < sendCounts[d]; ++r)
      for (int64_t b = 0; b < rowBytes; ++b)
        send.push_back(byteOf(step, rank, d, r, b));
  }
  const void *recv = nullptr;
  MoeA2AStatus st = moeA2AExchange(h, send.data(), sendCounts.data(),
                                   rowBytes, &recv, recvCounts.data());
  check(st == MOE_A2A_OK, who + " step " + std::to_string(step) +
                              ": exchange failed: " + moeA2AError(h));
  if (st != MOE_A2A_OK)
    return;
  int64_t total = 0;
  bool ok = true;
  const uint8_t *p = static_cast<const uint8_t *>(recv);
  for (int s = 0; s < size; ++s) {
    int64_t want = countOf(step, s, rank, size, scale);
    check(recvCounts[s] == want, who + " step " + std::to_string(step) +
                                     ": recvCounts[" + std::to_string(s) +
                                     "] = " + std::to_string(recvCounts[s]) +
                                     ", want " + std::to_string(want));
    for (int64_t r = 0; r < recvCounts[s] && ok; ++r)
      for (int64_t b = 0; b < rowBytes; ++b)
        if (*p++ != byteOf(step, s, rank, r, b)) {
          ok = false;
          break;
        }
    total += recvCounts[s];
  }
  check(ok, who + " step " + std::to_string(step) + ": rows out of order");
  int64_t cap = moeA2ARecvCapacity(h);
  check(cap >= total * rowBytes, who + ": capacity below the bytes received");
  check(cap >= *lastCapacity, who + ": capacity shrank");
  if (total * rowBytes <= *lastCapacity && total > 0 && *lastBytes > 0)
    check(recv == *lastPtr, who + " step " + std::to_string(step) +
                                ": buffer reallocated although it was big "
                                "enough");
  *lastCapacity = cap;
  if (total > 0) {
    *lastPtr = recv;
    *lastBytes = total * rowBytes;
  }

  // Send the rows back: the counts are the transpose.
  std::vector<uint8_t> rows(static_cast<const uint8_t *>(recv),
                            static_cast<const uint8_t *>(recv) +
                                total * rowBytes);
  std::vector<uint8_t> back(send.size() + 1, 0xEE);
  st = moeA2AExchangeKnown(h, rows.data(), recvCounts.data(),
                           sendCounts.data(), rowBytes, back.data());
  check(st == MOE_A2A_OK, who + " step " + std::to_string(step) +
                              ": known exchange failed: " + moeA2AError(h));
  check(std::memcmp(back.data(), send.data(), send.size()) == 0 &&
            back[send.size()] == 0xEE,
        who + " step " + std::to_string(step) +
            ": round trip did not return the original rows");
}

/// Runs fn(rank handle) on one thread per rank of a fresh local group.
void withLocalGroup(int size, double timeout,
                    const std::function<void(MoeA2A *)> &fn) {
  std::vector<MoeA2A *> ranks(size);
  MoeA2AStatus st = moeA2ACreateLocalGroup(size, timeout, ranks.data());
  check(st == MOE_A2A_OK, std::string("create local group: ") +
                              moeA2AError(nullptr));
  if (st != MOE_A2A_OK)
    return;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] { fn(ranks[r]); });
  for (auto &t : threads)
    t.join();
  for (MoeA2A *h : ranks)
    moeA2ADestroy(h);
}

// --- scenarios shared by the local and MPI drivers ---------------------------

void scenarioBasic(MoeA2A *h, const std::string &who) {
  int64_t cap = 0, bytes = 0;
  const void *ptr = nullptr;
  for (int step = 0; step < 14; ++step)
    rankStep(h, step, step < 7 ? 1 : 3, step % 3 == 0 ? 24 : 24, who, &cap,
             &ptr, &bytes);
}

/// Rank 0 expects one row more from rank 1 than rank 1 sends: ranks 0 and 1
/// fail naming both ranks and counts; the others succeed; then the group
/// still works.
void scenarioMismatch(MoeA2A *h, const std::string &who) {
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  const int64_t rowBytes = 8;
  std::vector<int64_t> sendCounts(size, 2), recvCounts(size, 2);
  if (rank == 0)
    recvCounts[1] = 3;
  std::vector<uint8_t> send(2 * size * rowBytes, 1),
      recv(3 * size * rowBytes, 0);
  MoeA2AStatus st = moeA2AExchangeKnown(h, send.data(), sendCounts.data(),
                                        recvCounts.data(), rowBytes,
                                        recv.data());
  std::string want = "rank 1 sends 2 rows to rank 0 but rank 0 expects 3";
  if (rank == 0 || rank == 1) {
    check(st == MOE_A2A_ERROR, who + ": mismatch not reported");
    check(contains(moeA2AError(h), "rank " + std::to_string(rank) + ": " +
                                       want),
          who + ": mismatch message is '" + moeA2AError(h) + "'");
  } else {
    check(st == MOE_A2A_OK,
          who + ": uninvolved rank failed: " + moeA2AError(h));
  }
  int64_t cap = 0, bytes = 0;
  const void *ptr = nullptr;
  rankStep(h, 3, 1, 16, who + " after mismatch", &cap, &ptr, &bytes);
}

/// The last rank aborts after one good step; the others must get
/// PEER_LOST naming it and its reason within 2 s (the timeout is 30 s).
void scenarioAbort(MoeA2A *h, const std::string &who) {
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  int64_t cap = 0, bytes = 0;
  const void *ptr = nullptr;
  rankStep(h, 1, 1, 8, who, &cap, &ptr, &bytes);
  if (rank == size - 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    moeA2AAbort(h, "killed");
    return;
  }
  std::vector<int64_t> counts(size, 0), recvCounts(size);
  const void *recv;
  auto t0 = Clock::now();
  MoeA2AStatus st =
      moeA2AExchange(h, nullptr, counts.data(), 8, &recv, recvCounts.data());
  double dt = secondsSince(t0);
  std::string want = "rank " + std::to_string(rank) + ": rank " +
                     std::to_string(size - 1) + " left the group (rank " +
                     std::to_string(size - 1) + ": killed)";
  check(st == MOE_A2A_PEER_LOST, who + ": abort not reported as PEER_LOST: " +
                                     moeA2AError(h));
  check(contains(moeA2AError(h), want),
        who + ": abort message is '" + moeA2AError(h) + "'");
  check(dt < 2.0, who + ": abort seen after " + std::to_string(dt) + " s");
  // Later exchanges fail at once too.
  st = moeA2AExchange(h, nullptr, counts.data(), 8, &recv, recvCounts.data());
  check(st == MOE_A2A_PEER_LOST, who + ": later exchange did not fail");
}

/// The last rank never calls exchange: the others time out naming it.
void scenarioTimeout(MoeA2A *h, const std::string &who, double timeout) {
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  if (rank == size - 1) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int>(timeout * 3000)));
    return;
  }
  std::vector<int64_t> counts(size, 1), recvCounts(size);
  std::vector<uint8_t> send(size * 4, 0);
  const void *recv;
  auto t0 = Clock::now();
  MoeA2AStatus st =
      moeA2AExchange(h, send.data(), counts.data(), 4, &recv, recvCounts.data());
  double dt = secondsSince(t0);
  check(st == MOE_A2A_TIMEOUT || st == MOE_A2A_PEER_LOST,
        who + ": missing rank not reported: " + moeA2AError(h));
  // The first rank to time out names the missing rank; a rank that
  // hears of that first may instead report it as left, naming both.
  std::string missing = "rank " + std::to_string(size - 1);
  check(contains(moeA2AError(h), "no answer from") &&
            contains(moeA2AError(h), missing),
        who + ": timeout message is '" + moeA2AError(h) + "'");
  check(dt >= timeout * 0.9 && dt < timeout + 3.0,
        who + ": timeout after " + std::to_string(dt) + " s");
}

int finish(const std::string &who) {
  std::lock_guard<std::mutex> lock(printMutex);
  if (failures == 0) {
    std::printf("%s: all %d checks passed\n", who.c_str(), checks.load());
    std::fflush(stdout);
    return 0;
  }
  std::printf("%s: %d of %d checks FAILED\n", who.c_str(), failures.load(),
              checks.load());
  std::fflush(stdout);
  return 1;
}

// --- local driver -------------------------------------------------------------

int runLocal() {
  for (int size = 1; size <= 4; ++size) {
    withLocalGroup(size, 20, [&](MoeA2A *h) {
      scenarioBasic(h, "local size " + std::to_string(size) + " rank " +
                           std::to_string(moeA2ARank(h)));
    });
    std::printf("PASS? local basic, %d ranks (failures so far: %d)\n", size,
                failures.load());
  }
  for (int size : {2, 3, 4})
    withLocalGroup(size, 20, [&](MoeA2A *h) {
      scenarioMismatch(h, "local mismatch rank " +
                              std::to_string(moeA2ARank(h)));
    });
  std::printf("PASS? local mismatch (failures so far: %d)\n", failures.load());
  withLocalGroup(4, 30, [&](MoeA2A *h) {
    scenarioAbort(h, "local abort rank " + std::to_string(moeA2ARank(h)));
  });
  std::printf("PASS? local abort (failures so far: %d)\n", failures.load());
  withLocalGroup(3, 0.5, [&](MoeA2A *h) {
    scenarioTimeout(h, "local timeout rank " + std::to_string(moeA2ARank(h)),
                    0.5);
  });
  std::printf("PASS? local timeout (failures so far: %d)\n", failures.load());

  // A rank destroyed early: the others get PEER_LOST at once.
  {
    std::vector<MoeA2A *> r(3);
    moeA2ACreateLocalGroup(3, 30, r.data());
    moeA2ADestroy(r[2]);
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; ++i)
      ts.emplace_back([&, i] {
        std::vector<int64_t> c(3, 0), rc(3);
        const void *recv;
        auto t0 = Clock::now();
        MoeA2AStatus st = moeA2AExchange(r[i], nullptr, c.data(), 4, &recv,
                                         rc.data());
        check(st == MOE_A2A_PEER_LOST &&
                  contains(moeA2AError(r[i]), "rank 2 left the group") &&
                  secondsSince(t0) < 2,
              std::string("destroyed rank: '") + moeA2AError(r[i]) + "'");
      });
    for (auto &t : ts)
      t.join();
    moeA2ADestroy(r[0]);
    moeA2ADestroy(r[1]);
  }
  // Invalid arguments: ERROR on the rank, PEER_LOST on the others at once.
  withLocalGroup(2, 30, [&](MoeA2A *h) {
    std::vector<int64_t> c(2, 0), rc(2);
    const void *recv;
    if (moeA2ARank(h) == 0)
      c[1] = -4;
    auto t0 = Clock::now();
    MoeA2AStatus st = moeA2AExchange(h, nullptr, c.data(), 4, &recv, rc.data());
    if (moeA2ARank(h) == 0)
      check(st == MOE_A2A_ERROR &&
                contains(moeA2AError(h),
                         "rank 0: invalid arguments: send count for rank 1 is "
                         "negative (-4)"),
            std::string("negative count: '") + moeA2AError(h) + "'");
    else
      check(st == MOE_A2A_PEER_LOST && secondsSince(t0) < 2 &&
                contains(moeA2AError(h), "rank 0 left the group"),
            std::string("peer of a negative count: '") + moeA2AError(h) + "'");
  });
  // Creation errors and defaults.
  {
    MoeA2A *h = nullptr;
    check(moeA2ACreateLocalGroup(0, 1, &h) == MOE_A2A_ERROR &&
              contains(moeA2AError(nullptr), "size must be >= 1, got 0"),
          std::string("size 0: '") + moeA2AError(nullptr) + "'");
    setenv("MOE_EP_TIMEOUT_S", "7", 1);
    check(moeA2ACreateLocalGroup(1, 0, &h) == MOE_A2A_OK &&
              moeA2ATimeoutSeconds(h) == 7.0 &&
              std::string(moeA2ABackendName(h)) == "local",
          "MOE_EP_TIMEOUT_S not used as the default timeout");
    moeA2ADestroy(h);
    unsetenv("MOE_EP_TIMEOUT_S");
    check(moeA2ACreateLocalGroup(1, 0, &h) == MOE_A2A_OK &&
              moeA2ATimeoutSeconds(h) == 60.0,
          "default timeout is not 60 s");
    moeA2ADestroy(h);
    if (!moeA2AHaveMpi()) {
      check(moeA2ACreateMpi(1, &h) == MOE_A2A_ERROR &&
                contains(moeA2AError(nullptr), "built without MPI"),
            std::string("MPI stub: '") + moeA2AError(nullptr) + "'");
    }
  }
  return finish("local");
}

// --- NCCL without a GPU ---------------------------------------------------------

int runNccl() {
  MoeA2A *h = nullptr;
  MoeA2AStatus st = moeA2ACreateNccl(0, 1, -1, "/nonexistent-dir/id", 1, &h);
  if (st == MOE_A2A_OK) {
    // A GPU is present: a one-rank exchange would need device buffers; the
    // point here is only that creation works.
    std::printf("nccl: created a handle (a GPU is present)\n");
    moeA2ADestroy(h);
    return finish("nccl");
  }
  std::printf("nccl: %s\n", moeA2AError(nullptr));
  check(st == MOE_A2A_ERROR && h == nullptr, "nccl: not MOE_A2A_ERROR");
  check(contains(moeA2AError(nullptr), "moeA2ACreateNccl: rank 0: "),
        "nccl: message does not name the function and rank");
  return finish("nccl");
}

// --- MPI driver ---------------------------------------------------------------

int runMpi(const std::string &scenario) {
  double timeout = scenario == "timeout" ? 1.0 : 30.0;
  MoeA2A *h = nullptr;
  if (moeA2ACreateMpi(timeout, &h) != MOE_A2A_OK) {
    std::printf("FAIL: moeA2ACreateMpi: %s\n", moeA2AError(nullptr));
    return 1;
  }
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  std::string who = "mpi " + scenario + " rank " + std::to_string(rank);
  check(std::string(moeA2ABackendName(h)) == "mpi", who + ": backend name");
  if (scenario == "basic") {
    scenarioBasic(h, who);
  } else if (scenario == "mismatch") {
    scenarioMismatch(h, who);
  } else if (scenario == "abort") {
    scenarioAbort(h, who);
  } else if (scenario == "timeout") {
    scenarioTimeout(h, who, timeout);
  } else if (scenario == "exit") {
    // Rank 1 exits with status 3 after one step; the others go on
    // exchanging and must fail (PEER_LOST from the exit hook, a timeout, or
    // mpirun ending the job) instead of hanging.
    int64_t cap = 0, bytes = 0;
    const void *ptr = nullptr;
    rankStep(h, 1, 1, 8, who, &cap, &ptr, &bytes);
    if (rank == 1) {
      std::printf("%s: exiting with status 3\n", who.c_str());
      std::fflush(stdout);
      std::exit(3);
    }
    for (int step = 2; step < 1000000; ++step) {
      std::vector<int64_t> c(size, 1), rc(size);
      std::vector<uint8_t> s(size * 8, 0);
      const void *recv;
      MoeA2AStatus st =
          moeA2AExchange(h, s.data(), c.data(), 8, &recv, rc.data());
      if (st != MOE_A2A_OK) {
        std::printf("%s: exchange failed as expected: %s\n", who.c_str(),
                    moeA2AError(h));
        std::fflush(stdout);
        break;
      }
    }
    moeA2ADestroy(h);
    return 1; // the job failed, as it should
  } else {
    std::printf("FAIL: unknown scenario '%s'\n", scenario.c_str());
    return 1;
  }
  moeA2ADestroy(h);
#ifdef MOE_A2A_TEST_MPI
  // After a fault the handle does not finalize MPI (a peer may be gone);
  // here every process is alive, so finalize for a clean exit.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized)
    MPI_Finalize();
#endif
  return finish(who);
}

} // namespace

int main(int argc, char **argv) {
  std::string mode = argc > 1 ? argv[1] : "local";
  if (mode == "local")
    return runLocal();
  if (mode == "nccl")
    return runNccl();
  if (mode == "mpi" && argc > 2)
    return runMpi(argv[2]);
  std::fprintf(stderr, "usage: moe-a2a-test local | nccl | mpi SCENARIO\n");
  return 2;
}
