//===- QMoEOps.cpp - ONNX Runtime's QMoE to moe ops -----------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// com.microsoft.QMoE: com.microsoft.MoE with block-quantized expert weights.
// Inputs: 0 input, 1 router_probs (logits), 2 fc1_experts_weights, 3
// fc1_scales, 4 fc1_experts_bias, 5 fc2_experts_weights, 6 fc2_scales, 7
// fc2_experts_bias, 8-10 fc3 weights/scales/bias, 11-13 fc1/fc2/fc3
// zero points, 14 router_weights.
//
// Weights are uint8 [E, N, K / pack] in nn.Linear layout (N outputs, K
// inputs, pack = 8 / expert_weight_bits codes per byte, the lowest bits
// holding the even column). With block_size = 0 there is one scale (and
// zero point) per output row: scales [E, N] (or [E, N, 1]), zero points
// [E, ceil(N / pack)] packed along the rows; otherwise one per block of
// block_size inputs: scales [E, N, B], zero points [E, N, ceil(B / pack)]
// packed along the blocks, B = ceil(K / block_size). Without zero points the
// zero is 2^(bits - 1). The weight is
//
//     W[e, n, c] = scale[e, n, c / block_size] * (code[e, n, c] - zero)
//
// in f32, exactly what ONNX Runtime's CPU kernel computes before its f32
// GEMMs. The dequantization is a linalg.generic on the packed weights,
// feeding the same moe ops as com.microsoft.MoE.
//
// Routing follows ONNX Runtime 1.30's CPU kernel: the top k of the logits,
// weighted by the softmax over the k chosen logits, whatever
// normalize_routing_weights says (with the flag set this is the
// renormalized softmax of com.microsoft.MoE; without it ONNX Runtime's CPU
// kernel still normalizes).
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "MoEEmitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::onnx_import;

namespace {

struct QuantizedWeight {
  const OnnxValue *codes = nullptr, *scales = nullptr, *zeros = nullptr;
  size_t codesSlot = 0, scalesSlot = 0, zerosSlot = 0;
  const char *name = "";
};

/// Checks the shapes of one quantized weight of N outputs and K inputs and
/// returns its f32 dequantization [E, N, K].
FailureOr<Value> dequantize(GraphImporter &g, const QuantizedWeight &w,
                            int64_t experts, int64_t n, int64_t k,
                            int64_t bits, int64_t blockSize) {
  int64_t pack = 8 / bits;
  std::string what = std::string(w.name) + "_experts_weights";
  if (!w.codes->elementType().isInteger(8) || !w.codes->isUnsigned)
    return g.fail(what + " ('" + g.inputName(w.codesSlot) + "') must be uint8");
  if (k % pack != 0)
    return g.fail("the input size " + std::to_string(k) + " of " + what +
                  " is not a multiple of " + std::to_string(pack) +
                  " codes per byte");
  if (failed(expectShape(g, w.codesSlot, what, *w.codes,
                         {experts, n, k / pack}, "[E, N, K / pack]")))
    return failure();
  int64_t blocks = blockSize ? (k + blockSize - 1) / blockSize : 1;
  std::string scalesWhat = std::string(w.name) + "_scales";
  if (!isa<FloatType>(w.scales->elementType()))
    return g.fail(scalesWhat + " must be floating-point");
  bool scales3d = w.scales->rank() == 3;
  if (blockSize) {
    if (failed(expectShape(g, w.scalesSlot, scalesWhat, *w.scales,
                           {experts, n, blocks}, "[E, N, ceil(K / block_size)]")))
      return failure();
  } else if (failed(expectShape(g, w.scalesSlot, scalesWhat, *w.scales,
                                scales3d ? SmallVector<int64_t>{experts, n, 1}
                                         : SmallVector<int64_t>{experts, n},
                                "[E, N]"))) {
    return failure();
  }
  std::string zerosWhat = std::string(w.name) + "_zero_points";
  if (w.zeros) {
    if (!w.zeros->elementType().isInteger(8) || !w.zeros->isUnsigned)
      return g.fail(zerosWhat + " must be uint8");
    if (blockSize) {
      if (blocks == 1 && pack > 1)
        return g.fail(zerosWhat + " with one block per row (K = " +
                      std::to_string(k) + ", block_size = " +
                      std::to_string(blockSize) +
                      ") is ambiguous; the QMoE schema needs K to be a "
                      "multiple of block_size * " + std::to_string(pack));
      if (failed(expectShape(g, w.zerosSlot, zerosWhat, *w.zeros,
                             {experts, n, (blocks + pack - 1) / pack},
                             "[E, N, ceil(blocks / pack)]")))
        return failure();
    } else if (failed(expectShape(g, w.zerosSlot, zerosWhat, *w.zeros,
                                  {experts, (n + pack - 1) / pack},
                                  "[E, ceil(N / pack)]"))) {
      return failure();
    }
  }

  OpBuilder &b = g.b();
  Type f32 = b.getF32Type();
  Value init = g.empty({b.getIndexAttr(experts), b.getIndexAttr(n),
                        b.getIndexAttr(k)},
                       f32);
  Value codes = w.codes->value, scales = w.scales->value;
  Value zeros = w.zeros ? w.zeros->value : Value();
  auto generic = linalg::GenericOp::create(
      b, g.loc(), TypeRange{init.getType()}, ValueRange{}, ValueRange{init},
      SmallVector<AffineMap>{AffineMap::getMultiDimIdentityMap(3, g.ctx())},
      SmallVector<utils::IteratorType>(3, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location l, ValueRange) {
        auto idx = [&](int64_t v) -> Value {
          return arith::ConstantIndexOp::create(nb, l, v);
        };
        auto i32c = [&](int64_t v) -> Value {
          return arith::ConstantIntOp::create(nb, l, v, 32);
        };
        Value e = linalg::IndexOp::create(nb, l, 0);
        Value row = linalg::IndexOp::create(nb, l, 1);
        Value col = linalg::IndexOp::create(nb, l, 2);
        // The code: bits [(c % pack) * bits, ...) of byte c / pack.
        auto field = [&](Value byte, Value position) -> Value {
          Value wide = arith::ExtUIOp::create(nb, l, nb.getI32Type(), byte);
          Value shift = arith::MulIOp::create(
              nb, l,
              arith::IndexCastOp::create(nb, l, nb.getI32Type(), position),
              i32c(bits));
          Value shifted = arith::ShRUIOp::create(nb, l, wide, shift);
          return arith::AndIOp::create(nb, l, shifted, i32c((1 << bits) - 1));
        };
        Value byte = tensor::ExtractOp::create(
            nb, l, codes,
            ValueRange{e, row, arith::DivUIOp::create(nb, l, col, idx(pack))});
        Value code =
            field(byte, arith::RemUIOp::create(nb, l, col, idx(pack)));
        Value block = blockSize
                          ? (Value)arith::DivUIOp::create(nb, l, col,
                                                          idx(blockSize))
                          : idx(0);
        SmallVector<Value> scaleIndex = {e, row};
        if (scales3d || blockSize)
          scaleIndex.push_back(block);
        Value scale = castScalar(
            nb, l, tensor::ExtractOp::create(nb, l, scales, scaleIndex), f32);
        Value zero;
        if (!zeros) {
          zero = i32c(1 << (bits - 1));
        } else if (blockSize) {
          Value zbyte = tensor::ExtractOp::create(
              nb, l, zeros,
              ValueRange{e, row,
                         arith::DivUIOp::create(nb, l, block, idx(pack))});
          zero = field(zbyte, arith::RemUIOp::create(nb, l, block, idx(pack)));
        } else {
          Value zbyte = tensor::ExtractOp::create(
              nb, l, zeros,
              ValueRange{e, arith::DivUIOp::create(nb, l, row, idx(pack))});
          zero = field(zbyte, arith::RemUIOp::create(nb, l, row, idx(pack)));
        }
        Value diff = arith::SubIOp::create(nb, l, code, zero);
        Value value = arith::MulFOp::create(
            nb, l, scale, arith::SIToFPOp::create(nb, l, f32, diff));
        linalg::YieldOp::create(nb, l, value);
      });
  return generic.getResult(0);
}

LogicalResult convertQMoE(GraphImporter &g) {
  const OnnxValue *input = g.input(0), *probs = g.input(1);
  if (!input || !probs)
    return failure();
  auto optional = [&](size_t i) -> const OnnxValue * {
    return g.hasInput(i) ? g.input(i) : nullptr;
  };
  for (size_t i = 0; i < g.numInputs(); ++i)
    if (g.hasInput(i) && !g.input(i))
      return failure();
  if (g.hasInput(14))
    return g.fail("router_weights (input 14) is not supported");
  if (g.numInputs() > 15)
    return g.fail("inputs past router_weights (fp4/fp8 global and "
                  "activation scales) are not supported");
  std::string quantType = g.attrString("quant_type", "int");
  if (quantType != "int")
    return g.fail("quant_type '" + quantType + "' is not supported (int)");
  int64_t bits = g.attrInt("expert_weight_bits", 4);
  if (bits != 2 && bits != 4 && bits != 8)
    return g.fail("expert_weight_bits = " + std::to_string(bits) +
                  " is not 2, 4 or 8");
  int64_t blockSize = g.attrInt("block_size", 0);
  if (blockSize != 0 && (blockSize < 16 || (blockSize & (blockSize - 1))))
    return g.fail("block_size = " + std::to_string(blockSize) +
                  " is not 0 or a power of 2 >= 16");
  if (g.attrInt("use_sparse_mixer", 0))
    return g.fail("use_sparse_mixer = 1 (SparseMixer routing) is not "
                  "supported");

  Type elem = input->elementType();
  if (!isa<Float32Type, Float16Type, BFloat16Type>(elem))
    return g.fail("input must be float, float16 or bfloat16");
  if (input->rank() != 2 && input->rank() != 3)
    return g.fail("input must be [T, H] or [B, S, H], got " +
                  shapeString(input->type().getShape()));
  int64_t hidden = input->type().getShape().back();
  if (ShapedType::isDynamic(hidden))
    return g.fail("the hidden size (last dimension of input) must be static");

  QuantizedWeight fc1{optional(2), optional(3), optional(11), 2, 3, 11, "fc1"};
  QuantizedWeight fc2{optional(5), optional(6), optional(12), 5, 6, 12, "fc2"};
  QuantizedWeight fc3{optional(8), optional(9), optional(13), 8, 9, 13, "fc3"};
  if (!fc1.codes || !fc1.scales || !fc2.codes || !fc2.scales)
    return g.fail("needs fc1/fc2 weights and scales (inputs 2, 3, 5, 6)");
  if (fc3.codes && !fc3.scales)
    return g.fail("fc3_experts_weights needs fc3_scales (input 9)");
  for (const QuantizedWeight *w : {&fc1, &fc2, &fc3})
    if (w->codes && (w->codes->rank() != 3 ||
                     llvm::any_of(w->codes->type().getShape(),
                                  ShapedType::isDynamic)))
      return g.fail(std::string(w->name) +
                    "_experts_weights must be a static 3-d [E, N, K / pack]");
  int64_t pack = 8 / bits;
  auto fc2Shape = fc2.codes->type().getShape();
  int64_t experts = fc2Shape[0];
  int64_t inter = fc2Shape[2] * pack;
  if (fc2Shape[1] != hidden)
    return g.fail("fc2_experts_weights ('" + g.inputName(5) + "') has shape " +
                  shapeString(fc2Shape) + ", expected [E, H, I / pack] with "
                  "H = " + std::to_string(hidden));

  MoESpec spec;
  if (failed(setFfnActivation(g, spec, fc3.codes != nullptr)))
    return failure();
  bool fused = spec.gating == moe::Gating::Interleaved ||
               spec.gating == moe::Gating::Concatenated;
  int64_t fc1Rows = fused ? 2 * inter : inter;
  int64_t k = g.attrInt("k", 1);
  if (k < 1 || k > experts)
    return g.fail("k = " + std::to_string(k) + " is out of range for " +
                  std::to_string(experts) + " experts");
  auto probsShape = probs->type().getShape();
  if (!isa<FloatType>(probs->elementType()))
    return g.fail("router_probs must be floating-point");
  if (!ShapedType::isDynamic(probsShape.back()) &&
      probsShape.back() != experts)
    return g.fail("router_probs ('" + g.inputName(1) + "') has " +
                  std::to_string(probsShape.back()) + " experts, the weights " +
                  std::to_string(experts));

  FailureOr<Value> w1 =
      dequantize(g, fc1, experts, fc1Rows, hidden, bits, blockSize);
  if (failed(w1))
    return failure();
  FailureOr<Value> w2 =
      dequantize(g, fc2, experts, hidden, inter, bits, blockSize);
  if (failed(w2))
    return failure();
  spec.fc1 = *w1;
  spec.fc2 = *w2;
  if (fc3.codes) {
    FailureOr<Value> w3 =
        dequantize(g, fc3, experts, inter, hidden, bits, blockSize);
    if (failed(w3))
      return failure();
    spec.fc3 = *w3;
  }
  // Biases: in the moe op all weights share one element type (f32 here).
  auto bias = [&](size_t slot, StringRef what, int64_t size,
                  StringRef symbolic) -> FailureOr<Value> {
    const OnnxValue *v = optional(slot);
    if (!v)
      return Value();
    if (failed(expectShape(g, slot, what, *v, {experts, size}, symbolic)))
      return failure();
    if (v->elementType().isF32())
      return v->value;
    return *g.elementwise({*v}, Type(), g.b().getF32Type(),
                          [&](OpBuilder &nb, Location l, ValueRange s) {
                            return castScalar(nb, l, s[0], nb.getF32Type());
                          });
  };
  FailureOr<Value> b1 = bias(4, "fc1_experts_bias", fc1Rows,
                             fused ? "[E, 2I]" : "[E, I]");
  FailureOr<Value> b2 = bias(7, "fc2_experts_bias", hidden, "[E, H]");
  FailureOr<Value> b3 = bias(10, "fc3_experts_bias", inter, "[E, I]");
  if (failed(b1) || failed(b2) || failed(b3))
    return failure();
  if (*b3 && !fc3.codes)
    return g.fail("fc3_experts_bias needs fc3_experts_weights");
  spec.fc1Bias = *b1;
  spec.fc2Bias = *b2;
  spec.fc3Bias = *b3;

  spec.input = input->value;
  spec.logits = probs->value;
  spec.k = k;
  spec.scoring = moe::Scoring::TopkSoftmax;
  spec.renormalize = false;
  FailureOr<Value> out = emitMoE(g, spec);
  if (failed(out))
    return failure();
  g.setOutput(0, *out);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerQMoEConverters(ConverterTable &table) {
  table["com.microsoft:QMoE"] = convertQMoE;
}
