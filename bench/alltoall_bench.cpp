//===- alltoall_bench.cpp - moeA2AExchange against raw MPI_Alltoallv ------===//
//
// Run under `mpirun -np N`. Every iteration draws random ragged counts
// (tokens x top-k rows per rank, spread over the ranks at random, the same
// on every rank from a shared seed), then times, with a barrier before
// each, (a) moeA2AExchange on the MPI backend and (b) MPI_Alltoall of the
// counts followed by MPI_Alltoallv of the same bytes. The two alternate per
// iteration. Rank 0 prints one line:
//   ranks=N rows_per_rank=R row_bytes=B iters=I a2a_median_ms=X mpi_median_ms=Y ratio=X/Y
// Usage: moe-alltoall-bench [--tokens 2048] [--topk 2] [--hidden 4096]
//                           [--iters 40] [--warmup 5]
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/AllToAll.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int64_t tokens = 2048, topk = 2, hidden = 4096;
  int iters = 40, warmup = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    long long v = std::atoll(argv[i + 1]);
    if (a == "--tokens") tokens = v;
    else if (a == "--topk") topk = v;
    else if (a == "--hidden") hidden = v;
    else if (a == "--iters") iters = static_cast<int>(v);
    else if (a == "--warmup") warmup = static_cast<int>(v);
  }
  MoeA2A *h = nullptr;
  if (moeA2ACreateMpi(60, &h) != MOE_A2A_OK) {
    std::fprintf(stderr, "%s\n", moeA2AError(nullptr));
    return 1;
  }
  int rank = moeA2ARank(h), size = moeA2ASize(h);
  const int64_t rowBytes = hidden * 2; // bf16
  const int64_t rows = tokens * topk;
  std::vector<char> send(static_cast<size_t>(rows * rowBytes));
  for (size_t i = 0; i < send.size(); ++i)
    send[i] = static_cast<char>(i * 7 + rank);
  // The raw path's receive buffer: the worst case (every row to one rank).
  std::vector<char> rawRecv(static_cast<size_t>(rows * size * rowBytes));
  std::vector<int64_t> counts(size), recvCounts(size);
  std::vector<int> sc(size), rc(size), sd(size), rd(size);
  std::vector<double> tA2A, tMpi;
  std::mt19937_64 rng(12345);
  for (int it = 0; it < warmup + iters; ++it) {
    // Random ragged counts: every rank's rows go to random ranks; all ranks
    // draw the whole matrix so that the draw stays in step.
    std::vector<int64_t> all(size * size, 0);
    for (int s = 0; s < size; ++s)
      for (int64_t r = 0; r < rows; ++r)
        ++all[s * size + static_cast<int>(rng() % size)];
    for (int d = 0; d < size; ++d)
      counts[d] = all[rank * size + d];
    for (int pass = 0; pass < 2; ++pass) {
      bool a2aFirst = it % 2 == 0;
      bool doA2A = (pass == 0) == a2aFirst;
      MPI_Barrier(MPI_COMM_WORLD);
      auto t0 = std::chrono::steady_clock::now();
      if (doA2A) {
        const void *recv = nullptr;
        if (moeA2AExchange(h, send.data(), counts.data(), rowBytes, &recv,
                           recvCounts.data()) != MOE_A2A_OK) {
          std::fprintf(stderr, "%s\n", moeA2AError(h));
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
      } else {
        int64_t off = 0;
        for (int d = 0; d < size; ++d) {
          int64_t bytes = counts[d] * rowBytes;
          if (bytes > INT_MAX || off > INT_MAX) {
            std::fprintf(stderr, "rank %d: %lld bytes to rank %d overflow "
                         "MPI_Alltoallv's int counts\n", rank,
                         static_cast<long long>(bytes), d);
            MPI_Abort(MPI_COMM_WORLD, 1);
          }
          sc[d] = static_cast<int>(bytes);
          sd[d] = static_cast<int>(off);
          off += bytes;
        }
        MPI_Alltoall(sc.data(), 1, MPI_INT, rc.data(), 1, MPI_INT,
                     MPI_COMM_WORLD);
        int64_t roff = 0;
        for (int d = 0; d < size; ++d) {
          rd[d] = static_cast<int>(roff);
          roff += rc[d];
        }
        MPI_Alltoallv(send.data(), sc.data(), sd.data(), MPI_BYTE,
                      rawRecv.data(), rc.data(), rd.data(), MPI_BYTE,
                      MPI_COMM_WORLD);
      }
      double ms = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
      // The slowest rank's time is the step's time.
      double slowest = 0;
      MPI_Allreduce(&ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (it >= warmup)
        (doA2A ? tA2A : tMpi).push_back(slowest);
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  if (rank == 0)
    std::printf("ranks=%d rows_per_rank=%lld row_bytes=%lld iters=%d "
                "a2a_median_ms=%.3f mpi_median_ms=%.3f ratio=%.3f\n",
                size, static_cast<long long>(rows),
                static_cast<long long>(rowBytes), iters, median(tA2A),
                median(tMpi), median(tA2A) / median(tMpi));
  moeA2ADestroy(h); // MPI was initialized here, so the handle leaves it
  MPI_Finalize();
  return 0;
}
