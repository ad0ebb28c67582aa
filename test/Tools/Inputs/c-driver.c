/* A plain C program that links a model compiled by moe-compile (through its
   generated header only: no LLVM/MLIR library) and runs it on fixed inputs.
   The model is Inputs/add.mlir: sum = a + b for a, b of shape [2, 3]. */
#include <stdio.h>
#include <stdlib.h>
#include "add.h"

typedef MOE_DESCRIPTOR(2) desc2;

int main(void) {
  float a[6] = {0, 1, 2, 3, 4, 5}, b[6] = {10, 10, 10, 20, 20, 20};
  desc2 da = {a, a, 0, {2, 3}, {3, 1}};
  desc2 db = {b, b, 0, {2, 3}, {3, 1}};
  desc2 result;
  void *args[3] = {&result, &da, &db};
  moe_model_invoke(args);
  float *r = (float *)result.aligned + result.offset;
  for (int i = 0; i < 6; ++i)
    printf("%g ", r[i]);
  printf("\n%s", moe_model_metadata());
  free(result.allocated);
  return 0;
}
