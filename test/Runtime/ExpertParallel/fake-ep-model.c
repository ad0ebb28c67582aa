/*===- fake-ep-model.c - a hand-written expert-parallel model --------------===*
 *
 * Part of moe-mlir's tests (plain C).
 *
 * A shared library with the ABI of a model compiled by `moe-compile --ep 2`
 * (moe_model_metadata, moe_model_invoke, moe_model_set_expert_parallel),
 * for moe-run's expert-parallel paths without the compiler: one MoE layer
 * whose expert e scales a row elementwise by experts.e.scale [4], and whose
 * router is an input:
 *
 *   y[t] = sum over j with slots[t, j] >= 0 of x[t] * scale[slots[t, j]]
 *
 * 3 experts on 2 ranks of 2 slots (contiguous: rank 0 experts 0, 1; rank 1
 * expert 2 and an unused slot). Every rank sends its home tokens' rows to
 * the slots' ranks (dispatch), scales them, sends them back (combineBack),
 * sums its home tokens and shares them (allGather). With the environment
 * variable FAKE_EP_BAD_RANK=R, rank R routes its last home token to slot 99
 * (its dispatch fails; the other rank loses its peer).
 *
 *===----------------------------------------------------------------------===*/

#include "moe-mlir/Runtime/ExpertParallel.h"

#include <stdlib.h>
#include <string.h>

#define H 4
#define K 2
#define SLOTS 2
#define RANKS 2

static const MoeEpHooks *hooks;

void moe_model_set_expert_parallel(const MoeEpHooks *h) { hooks = h; }

const char *moe_model_metadata(void) {
  return "moe-model-abi 1\n"
         "entry fake_ep\n"
         "expert-parallel 2\n"
         "input x f32 2 -1 4\n"
         "input slots i32 2 -1 2\n"
         "input experts.*.scale f32 2 2 4\n"
         "slots experts.*.scale 4 0 1 2 -1\n"
         "output y f32 2 -1 4\n";
}

void moe_model_invoke(void **args) {
  int64_t *result = (int64_t *)args[0];
  const int64_t *xd = (const int64_t *)args[1];
  const int64_t *sd = (const int64_t *)args[2];
  const int64_t *wd = (const int64_t *)args[3];
  const float *x = (const float *)(intptr_t)xd[1] + xd[2];
  int64_t tokens = xd[3];
  const int32_t *slots = (const int32_t *)(intptr_t)sd[1] + sd[2];
  const float *scale = (const float *)(intptr_t)wd[1] + wd[2];
  int64_t rank = hooks->rank();
  int64_t begin = moeEpHomeBegin(rank, tokens, RANKS);
  int64_t end = moeEpHomeBegin(rank + 1, tokens, RANKS);

  int32_t *routed = (int32_t *)malloc((size_t)(tokens * K + 1) * 4);
  memcpy(routed, slots, (size_t)(tokens * K) * 4);
  const char *bad = getenv("FAKE_EP_BAD_RANK");
  if (bad && atoi(bad) == rank && end > begin)
    routed[(end - 1) * K] = 99;

  float *rows = (float *)malloc((size_t)(tokens * K * H + 1) * 4);
  int32_t counts[SLOTS];
  int32_t *source = (int32_t *)malloc((size_t)(tokens * K + 1) * 4);
  hooks->dispatch(x, tokens, H * 4, routed, K, SLOTS, rows, counts, source);
  int64_t i = 0;
  for (int l = 0; l < SLOTS; ++l)
    for (int32_t n = 0; n < counts[l]; ++n, ++i)
      for (int c = 0; c < H; ++c)
        rows[i * H + c] *= scale[l * H + c];
  float *home = (float *)calloc((size_t)((end - begin) * K * H + 1), 4);
  hooks->combineBack(rows, source, tokens, K, H * 4, home);
  float *mine = (float *)calloc((size_t)((end - begin) * H + 1), 4);
  for (int64_t t = 0; t < end - begin; ++t)
    for (int j = 0; j < K; ++j)
      for (int c = 0; c < H; ++c)
        mine[t * H + c] += home[(t * K + j) * H + c];
  float *y = (float *)malloc((size_t)(tokens * H + 1) * 4);
  hooks->allGather(mine, tokens, H * 4, y);
  free(routed);
  free(rows);
  free(source);
  free(home);
  free(mine);
  result[0] = result[1] = (int64_t)(intptr_t)y;
  result[2] = 0;
  result[3] = tokens;
  result[4] = H;
  result[5] = H;
  result[6] = 1;
}
