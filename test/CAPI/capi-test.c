/*===- capi-test.c - the C API from a C program ---------------------------===*\
|*                                                                            *|
|* Part of moe-mlir's tests.                                                  *|
|*                                                                            *|
|* moe-capi-test DIR: a C99 program over include/moe-mlir-c/MoEMlir.h,       *|
|* linked to libMoEMlirC.so. Parses a small model, runs pipelines, compiles, *|
|* runs it on caller buffers, saves and reloads it, and checks the status    *|
|* codes and one-line messages of the failures. Prints PASS/FAIL lines for   *|
|* capi.test.                                                                 *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#include "moe-mlir-c/MoEMlir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0, failures = 0;

static void check(int ok, const char *name) {
  ++checks;
  if (ok) {
    printf("PASS: %s\n", name);
  } else {
    ++failures;
    printf("FAIL: %s\n", name);
  }
}

/* Checks that `status` failed with `code` and prints its message. */
static void checkFailure(MoeMlirStatus status, MoeMlirStatusCode code,
                         const char *name) {
  int ok = !moeMlirStatusIsSuccess(status) &&
           moeMlirStatusGetCode(status) == code &&
           strchr(moeMlirStatusGetMessage(status), '\n') == NULL;
  printf("MESSAGE: %s\n", moeMlirStatusGetMessage(status));
  check(ok, name);
  moeMlirStatusDestroy(status);
}

static int succeeded(MoeMlirStatus status, const char *name) {
  if (!moeMlirStatusIsSuccess(status)) {
    printf("FAIL: %s: %s\n", name, moeMlirStatusGetMessage(status));
    ++checks;
    ++failures;
    moeMlirStatusDestroy(status);
    return 0;
  }
  check(1, name);
  return 1;
}

static void appendText(const char *data, size_t length, void *user) {
  size_t *total = (size_t *)user;
  *total += length;
  (void)data;
}

static const char *kModel =
    "func.func @add(%a: tensor<2x3xf32> {moe.name = \"a\"},\n"
    "               %b: tensor<?x3xf32> {moe.name = \"b\"})\n"
    "    -> (tensor<2x3xf32> {moe.name = \"sum\"}) {\n"
    "  %0 = tensor.cast %b : tensor<?x3xf32> to tensor<2x3xf32>\n"
    "  %1 = arith.addf %a, %0 : tensor<2x3xf32>\n"
    "  %2 = arith.addf %1, %1 : tensor<2x3xf32>\n"
    "  %3 = arith.subf %2, %1 : tensor<2x3xf32>\n"
    "  return %3 : tensor<2x3xf32>\n"
    "}\n";

/* Runs `model` on a and b (b of `rows` rows) and checks sum = a + b. */
static void runAdd(MoeMlirCompiledModel model, const char *name) {
  float a[6], b[6];
  int64_t shape[2] = {2, 3};
  MoeMlirTensorView va = {MoeMlirDTypeF32, 2, shape, a};
  MoeMlirTensorView vb = {MoeMlirDTypeF32, 2, shape, b};
  const MoeMlirTensorView *inputs[2] = {&va, &vb};
  MoeMlirTensor out;
  int ok;
  for (int i = 0; i < 6; ++i) {
    a[i] = (float)i;
    b[i] = 0.5f * (float)i;
  }
  if (!succeeded(moeMlirCompiledModelRun(model, 2, inputs, &out), name))
    return;
  ok = moeMlirTensorGetDType(out) == MoeMlirDTypeF32 &&
       moeMlirTensorGetRank(out) == 2 && moeMlirTensorGetShape(out)[0] == 2 &&
       moeMlirTensorGetShape(out)[1] == 3 &&
       moeMlirTensorGetNumBytes(out) == 6 * sizeof(float);
  for (int i = 0; ok && i < 6; ++i)
    ok = ((const float *)moeMlirTensorGetData(out))[i] == a[i] + b[i];
  check(ok, "the result is a + b");
  moeMlirTensorDestroy(out);
}

int main(int argc, char **argv) {
  char path[4096];
  MoeMlirContext context;
  MoeMlirModule module, copy;
  MoeMlirCompiledModel model, loaded;
  MoeMlirCompileOptions options;
  size_t printed = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: moe-capi-test DIR\n");
    return 2;
  }
  context = moeMlirContextCreate();

  checkFailure(
      moeMlirModuleParse(context, "func.func @f(", 13, "broken.mlir", &module),
      MoeMlirStatusError, "a parse error is one line");
  checkFailure(moeMlirImportHuggingFace(context, "/nonexistent/checkpoint",
                                        false, &module),
               MoeMlirStatusError, "a missing checkpoint directory");
  if (!succeeded(moeMlirModuleParse(context, kModel, strlen(kModel), "add.mlir",
                                    &module),
                 "parse"))
    return 1;
  check(moeMlirModuleGetCheckpoint(module) == NULL, "no checkpoint recorded");
  checkFailure(moeMlirModuleRunPipeline(module, "no-such-pass"),
               MoeMlirStatusInvalidArgument, "an unknown pass");

  copy = moeMlirModuleClone(module);
  succeeded(moeMlirModuleRunPipeline(copy, "canonicalize,cse"),
            "canonicalize,cse");
  succeeded(moeMlirModuleRunPipeline(copy, "builtin.module(canonicalize)"),
            "an anchored pipeline");
  moeMlirModulePrint(copy, appendText, &printed);
  check(printed > 0, "print");
  moeMlirModuleDestroy(copy);

  moeMlirCompileOptionsInit(&options);
  options.target = "cuda";
  checkFailure(moeMlirModuleCompile(module, &options, &model),
               MoeMlirStatusNotImplemented, "target cuda");
  moeMlirCompileOptionsInit(&options);
  options.expertParallelism = 4; /* @add has no MoE layer to shard */
  checkFailure(moeMlirModuleCompile(module, &options, &model),
               MoeMlirStatusError, "expert parallelism 4");
  moeMlirCompileOptionsInit(&options);
  options.target = "tpu";
  checkFailure(moeMlirModuleCompile(module, &options, &model),
               MoeMlirStatusInvalidArgument, "an unknown target");

  if (!succeeded(moeMlirModuleCompile(module, NULL, &model), "compile"))
    return 1;
  {
    MoeMlirTensorSpec in = moeMlirCompiledModelGetInput(model, 1);
    MoeMlirTensorSpec out = moeMlirCompiledModelGetOutput(model, 0);
    check(strcmp(moeMlirCompiledModelGetEntry(model), "add") == 0 &&
              moeMlirCompiledModelGetNumInputs(model) == 2 &&
              moeMlirCompiledModelGetNumOutputs(model) == 1 &&
              strcmp(in.name, "b") == 0 && in.dtype == MoeMlirDTypeF32 &&
              in.rank == 2 && in.shape[0] == -1 && in.shape[1] == 3 &&
              strcmp(out.name, "sum") == 0 &&
              moeMlirCompiledModelFindInput(model, "a") == 0 &&
              moeMlirCompiledModelFindInput(model, "c") == -1,
          "the specs");
  }
  runAdd(model, "run");

  {
    float data[8] = {0};
    int32_t ints[6] = {0};
    int64_t bad[2] = {2, 4}, good[2] = {2, 3};
    MoeMlirTensorView va = {MoeMlirDTypeF32, 2, good, data};
    MoeMlirTensorView vb = {MoeMlirDTypeF32, 2, bad, data};
    MoeMlirTensorView vi = {MoeMlirDTypeI32, 2, good, ints};
    const MoeMlirTensorView *shape[2] = {&va, &vb};
    const MoeMlirTensorView *dtype[2] = {&vi, &va};
    const MoeMlirTensorView *missing[2] = {&va, NULL};
    MoeMlirTensor out;
    checkFailure(moeMlirCompiledModelRun(model, 2, shape, &out),
                 MoeMlirStatusInvalidArgument, "a wrong shape");
    checkFailure(moeMlirCompiledModelRun(model, 2, dtype, &out),
                 MoeMlirStatusInvalidArgument, "a wrong dtype");
    checkFailure(moeMlirCompiledModelRun(model, 2, missing, &out),
                 MoeMlirStatusInvalidArgument, "a missing input");
    checkFailure(moeMlirCompiledModelRun(model, 1, missing, &out),
                 MoeMlirStatusInvalidArgument, "too few inputs");
  }

  {
    float values[3] = {1.0f, 1.00390625f, -2.5f};
    int64_t n = 3;
    MoeMlirTensorView view = {MoeMlirDTypeF32, 1, &n, values};
    MoeMlirTensor bf16;
    if (succeeded(moeMlirTensorCreateConverted(&view, MoeMlirDTypeBF16, &bf16),
                  "convert f32 to bf16")) {
      const uint16_t *bits = (const uint16_t *)moeMlirTensorGetData(bf16);
      check(bits[0] == 0x3f80 && bits[1] == 0x3f80 && bits[2] == 0xc020,
            "bf16 rounds to nearest even");
      succeeded(moeMlirTensorConvert(bf16, MoeMlirDTypeF32),
                "convert back to f32");
      check(((const float *)moeMlirTensorGetData(bf16))[2] == -2.5f,
            "converted back");
      moeMlirTensorDestroy(bf16);
    }
    checkFailure(moeMlirTensorCreateConverted(&view, MoeMlirDTypeI64, &bf16),
                 MoeMlirStatusInvalidArgument,
                 "no float to integer conversion");
  }

  snprintf(path, sizeof(path), "%s/add.so", argv[1]);
  if (succeeded(moeMlirCompiledModelSave(model, path), "save") &&
      succeeded(moeMlirCompiledModelLoad(path, &loaded), "load")) {
    runAdd(loaded, "run the reloaded model");
    checkFailure(moeMlirLanguageModelCreate(loaded, NULL),
                 MoeMlirStatusInvalidArgument, "not a language model");
    moeMlirCompiledModelDestroy(loaded);
  }
  snprintf(path, sizeof(path), "%s/add.h", argv[1]);
  succeeded(moeMlirCompiledModelWriteHeader(model, path), "write the header");
  checkFailure(moeMlirCompiledModelLoad("/nonexistent/model.so", &loaded),
               MoeMlirStatusError, "a missing library");

  moeMlirSetNumThreads(2);
  check(moeMlirGetNumThreads() == 2, "threads");
  check(moeMlirGetModelKind(argv[1]) == MoeMlirModelKindHFCheckpoint &&
            moeMlirGetModelKind("m.onnx") == MoeMlirModelKindONNX &&
            moeMlirGetModelKind("m.so") == MoeMlirModelKindSharedLibrary &&
            moeMlirGetModelKind("m.mlir") == MoeMlirModelKindMLIR,
        "model kinds");

  moeMlirCompiledModelDestroy(model);
  moeMlirModuleDestroy(module);
  moeMlirContextDestroy(context);
  if (failures) {
    printf("moe-capi-test: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("moe-capi-test: all %d checks passed\n", checks);
  return 0;
}
