/*===- AllToAll.h - ragged all-to-all for expert parallelism -------*- C -*-===*
 *
 * Part of moe-mlir's runtime (plain C/C++, no MLIR/LLVM).
 *
 * One C interface, three backends, for the token exchange of expert
 * parallelism: every rank of an EP group sends a variable number of rows
 * (tokens) to every other rank and receives the rows meant for it.
 *
 *  - local: the ranks are threads of this process (moeA2ACreateLocalGroup);
 *    rows are copied once, straight from the peers' send buffers;
 *  - MPI:   one rank per process of MPI_COMM_WORLD (moeA2ACreateMpi);
 *    nonblocking point-to-point messages polled against a deadline;
 *  - NCCL:  one rank per process and GPU, buffers in device memory
 *    (moeA2ACreateNccl); ncclSend/ncclRecv in one group per exchange.
 *
 * Every wait has a deadline. A rank that times out, aborts or is destroyed
 * early leaves the group: the other ranks' pending and later exchanges fail
 * (MOE_A2A_TIMEOUT / MOE_A2A_PEER_LOST) with a one-line message naming the
 * ranks. A count mismatch in moeA2AExchangeKnown fails only the ranks
 * involved (MOE_A2A_ERROR); the group stays usable. See
 * docs/expert-parallel.md.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOE_MLIR_RUNTIME_ALLTOALL_H
#define MOE_MLIR_RUNTIME_ALLTOALL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One rank's handle on an EP group. */
typedef struct MoeA2A MoeA2A;

typedef enum {
  MOE_A2A_OK = 0,
  MOE_A2A_ERROR = 1,
  MOE_A2A_TIMEOUT = 2,
  MOE_A2A_PEER_LOST = 3
} MoeA2AStatus;

/* In-process backend: `size` ranks that are threads of this process.
   Writes `size` handles to ranks[0..size-1]; handle i is rank i and is
   used by one thread. timeoutSeconds <= 0: default (env MOE_EP_TIMEOUT_S,
   else 60). */
MoeA2AStatus moeA2ACreateLocalGroup(int size, double timeoutSeconds,
                                    MoeA2A **ranks);

/* MPI backend (MPI_COMM_WORLD; calls MPI_Init if needed); only when built
   with MPI, else returns MOE_A2A_ERROR with a message saying it was not
   built. */
MoeA2AStatus moeA2ACreateMpi(double timeoutSeconds, MoeA2A **rank);

/* NCCL backend on GPU buffers (device pointers); only when built with
   CUDA+NCCL, else MOE_A2A_ERROR. `rank` of `size` ranks uses CUDA device
   `device` (< 0: rank modulo the number of devices). The NCCL unique id is
   exchanged through `idFile`, a path every rank can read: rank 0 writes it
   (atomically), the others wait for it until the deadline. rank < 0 and
   size <= 0: rank, size and the id come from MPI_COMM_WORLD instead
   (needs the MPI backend built; idFile is then ignored).
   For this backend `send`, `*recv` and the `recv` of moeA2AExchangeKnown
   are device pointers; the counts stay in host memory. */
MoeA2AStatus moeA2ACreateNccl(int rank, int size, int device,
                              const char *idFile, double timeoutSeconds,
                              MoeA2A **out);

int moeA2ARank(const MoeA2A *c);
int moeA2ASize(const MoeA2A *c);

/* Ragged exchange of rows. This rank sends sendCounts[r] rows of rowBytes
   bytes to rank r; the rows in `send` are grouped by destination rank in
   rank order. Counts are exchanged first; recvCounts[r] receives the number
   of rows from rank r; *recv points to them grouped by source rank in rank
   order, in a buffer owned by the handle, reused across calls (grown, never
   shrunk), valid until the next call on this handle. */
MoeA2AStatus moeA2AExchange(MoeA2A *c, const void *send,
                            const int64_t *sendCounts, int64_t rowBytes,
                            const void **recv, int64_t *recvCounts);

/* Same, when both sides already know the counts (e.g. sending expert
   outputs back: the counts are the transpose of the forward exchange).
   recvCounts is input here; the rows go to the caller's `recv` buffer.
   Every rank checks that what its peers send matches what it expects: a
   mismatch is MOE_A2A_ERROR on the ranks involved, with a message naming
   both ranks and both counts. */
MoeA2AStatus moeA2AExchangeKnown(MoeA2A *c, const void *send,
                                 const int64_t *sendCounts,
                                 const int64_t *recvCounts, int64_t rowBytes,
                                 void *recv);

/* Tells the peers this rank is leaving (a fault or the end): their pending
   and later exchanges fail with MOE_A2A_PEER_LOST promptly (not after the
   timeout). */
void moeA2AAbort(MoeA2A *c, const char *reason);

/* The last error of this handle: one line naming the rank, the peer and
   what happened. moeA2AError(NULL) is the calling thread's last error of a
   moeA2ACreate* function ("" when none). */
const char *moeA2AError(const MoeA2A *c);

/* Leaves the group (peers that exchange later get MOE_A2A_PEER_LOST) and
   frees the handle. NULL is a no-op. */
void moeA2ADestroy(MoeA2A *c);

/* --- Additions to the interface ----------------------------------------- */

/* Bytes of the receive buffer the handle owns (moeA2AExchange): grows to
   the largest step so far and never shrinks. */
int64_t moeA2ARecvCapacity(const MoeA2A *c);

/* "local", "mpi" or "nccl". */
const char *moeA2ABackendName(const MoeA2A *c);

/* The timeout the handle uses, in seconds. */
double moeA2ATimeoutSeconds(const MoeA2A *c);

/* Whether the backends were compiled in (1) or not (0). */
int moeA2AHaveMpi(void);
int moeA2AHaveNccl(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE_MLIR_RUNTIME_ALLTOALL_H */
