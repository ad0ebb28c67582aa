/* The all-to-all header used from C: a one-rank local group exchanges three
   rows with itself and prints them. */
#include "moe-mlir/Runtime/AllToAll.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  MoeA2A *rank = NULL;
  if (moeA2ACreateLocalGroup(1, 5.0, &rank) != MOE_A2A_OK) {
    printf("FAIL: %s\n", moeA2AError(NULL));
    return 1;
  }
  const char rows[3][4] = {"abc", "def", "ghi"};
  int64_t sendCounts[1] = {3}, recvCounts[1] = {0};
  const void *recv = NULL;
  MoeA2AStatus st =
      moeA2AExchange(rank, rows, sendCounts, 4, &recv, recvCounts);
  if (st != MOE_A2A_OK || recvCounts[0] != 3 || memcmp(recv, rows, 12) != 0) {
    printf("FAIL: %s\n", moeA2AError(rank));
    return 1;
  }
  printf("c: rank %d of %d (%s) received %lld rows: %s %s %s\n",
         moeA2ARank(rank), moeA2ASize(rank), moeA2ABackendName(rank),
         (long long)recvCounts[0], (const char *)recv,
         (const char *)recv + 4, (const char *)recv + 8);
  moeA2ADestroy(rank);
  return 0;
}
