//===- IndexingOps.cpp - ONNX Gather, GatherElements, ScatterElements -----===//
//
// Part of moe-mlir's ONNX frontend.
//
// Gathers become a linalg.generic whose body reads the data with
// tensor.extract at the gathered coordinates; negative indices count from
// the end, as ONNX specifies. ScatterElements is sequential (scf loops over
// the updates in order), which makes duplicate indices well defined: with
// reduction = none the last update wins, as in ONNX Runtime.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

/// An index read from an integer tensor element, made non-negative by
/// adding `size` when negative, as an index value.
Value normalizedIndex(OpBuilder &b, Location loc, Value raw, Value size) {
  Value i64 = castScalar(b, loc, raw, b.getI64Type());
  Value sizeI64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), size);
  Value zero = arith::ConstantIntOp::create(b, loc, 0, 64);
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i64, zero);
  Value wrapped = arith::AddIOp::create(b, loc, i64, sizeI64);
  Value fixed = arith::SelectOp::create(b, loc, negative, wrapped, i64);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), fixed);
}

LogicalResult convertGather(GraphImporter &g) {
  const OnnxValue *data = g.input(0), *indices = g.input(1);
  if (!data || !indices)
    return failure();
  if (!isa<IntegerType>(indices->elementType()) ||
      indices->elementType().isInteger(1))
    return g.fail("indices must be integers");
  int64_t rank = data->rank();
  if (rank == 0)
    return g.fail("data must have rank >= 1");
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), rank, "axis");
  if (!axis)
    return failure();
  // Known 1-d data with constant indices (shape computations).
  if (data->elements && rank == 1 && indices->elements) {
    SmallVector<OpFoldResult> out;
    int64_t n = data->elements->size();
    for (OpFoldResult i : *indices->elements) {
      std::optional<int64_t> c = getConstantIntValue(i);
      if (!c) {
        out.clear();
        break;
      }
      int64_t k = *c < 0 ? *c + n : *c;
      if (k < 0 || k >= n)
        return g.fail("index " + std::to_string(*c) + " is out of range");
      out.push_back((*data->elements)[k]);
    }
    if (!out.empty() || indices->elements->empty()) {
      g.setOutput(0, g.knownValue(out, indices->rank() == 0,
                                  data->elementType()));
      return success();
    }
  }
  int64_t ir = indices->rank();
  SmallVector<OpFoldResult> outShape;
  for (int64_t d = 0; d < *axis; ++d)
    outShape.push_back(g.dim(data->value, d));
  for (int64_t d = 0; d < ir; ++d)
    outShape.push_back(g.dim(indices->value, d));
  for (int64_t d = *axis + 1; d < rank; ++d)
    outShape.push_back(g.dim(data->value, d));
  int64_t outRank = outShape.size();
  Value init = g.empty(outShape, data->elementType());
  SmallVector<AffineExpr> idxExprs;
  for (int64_t d = 0; d < ir; ++d)
    idxExprs.push_back(getAffineDimExpr(*axis + d, g.ctx()));
  SmallVector<AffineMap> maps = {
      AffineMap::get(outRank, 0, idxExprs, g.ctx()),
      AffineMap::getMultiDimIdentityMap(outRank, g.ctx())};
  Value axisSize = g.indexValue(g.dim(data->value, *axis));
  Value source = data->value;
  int64_t gatheredAxis = *axis;
  auto generic = linalg::GenericOp::create(
      g.b(), g.loc(), TypeRange{init.getType()}, ValueRange{indices->value},
      ValueRange{init}, maps,
      SmallVector<utils::IteratorType>(outRank, utils::IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < gatheredAxis; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d));
        coords.push_back(normalizedIndex(b, loc, args[0], axisSize));
        for (int64_t d = gatheredAxis + 1; d < rank; ++d)
          coords.push_back(linalg::IndexOp::create(b, loc, d - 1 + ir));
        Value v = tensor::ExtractOp::create(b, loc, source, coords);
        linalg::YieldOp::create(b, loc, v);
      });
  g.setOutput(0, generic.getResult(0), data->isUnsigned);
  return success();
}

LogicalResult convertGatherElements(GraphImporter &g) {
  const OnnxValue *data = g.input(0), *indices = g.input(1);
  if (!data || !indices)
    return failure();
  int64_t rank = data->rank();
  if (indices->rank() != rank)
    return g.fail("data and indices differ in rank");
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), rank, "axis");
  if (!axis)
    return failure();
  SmallVector<OpFoldResult> shape = g.dims(indices->value);
  Value init = g.empty(shape, data->elementType());
  Value axisSize = g.indexValue(g.dim(data->value, *axis));
  Value source = data->value;
  int64_t gatheredAxis = *axis;
  SmallVector<AffineMap> maps(2,
                              AffineMap::getMultiDimIdentityMap(rank, g.ctx()));
  auto generic = linalg::GenericOp::create(
      g.b(), g.loc(), TypeRange{init.getType()}, ValueRange{indices->value},
      ValueRange{init}, maps,
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> coords;
        for (int64_t d = 0; d < rank; ++d)
          coords.push_back(d == gatheredAxis
                               ? normalizedIndex(b, loc, args[0], axisSize)
                               : (Value)linalg::IndexOp::create(b, loc, d));
        linalg::YieldOp::create(
            b, loc,
            tensor::ExtractOp::create(b, loc, source, coords).getResult());
      });
  g.setOutput(0, generic.getResult(0), data->isUnsigned);
  return success();
}

/// Builds a loop nest over `bounds` carrying one tensor; `body` gets the
/// induction variables and the carried tensor and returns its new value.
Value loopNest(OpBuilder &b, Location loc, ArrayRef<Value> bounds,
               Value carried,
               const std::function<Value(OpBuilder &, Location, ValueRange,
                                         Value)> &body,
               SmallVector<Value> ivs = {}) {
  if (ivs.size() == bounds.size())
    return body(b, loc, ivs, carried);
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, c0, bounds[ivs.size()], c1, ValueRange{carried},
      [&](OpBuilder &lb, Location ll, Value iv, ValueRange args) {
        SmallVector<Value> next = ivs;
        next.push_back(iv);
        Value r = loopNest(lb, ll, bounds, args[0], body, next);
        scf::YieldOp::create(lb, ll, r);
      });
  return loop.getResult(0);
}

LogicalResult convertScatterElements(GraphImporter &g) {
  const OnnxValue *data = g.input(0), *indices = g.input(1),
                  *updates = g.input(2);
  if (!data || !indices || !updates)
    return failure();
  int64_t rank = data->rank();
  if (indices->rank() != rank || updates->rank() != rank)
    return g.fail("data, indices and updates differ in rank");
  if (updates->elementType() != data->elementType())
    return g.fail("data and updates differ in element type");
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), rank, "axis");
  if (!axis)
    return failure();
  std::string reduction = g.attrString("reduction", "none");
  if (reduction != "none" && reduction != "add" && reduction != "mul" &&
      reduction != "max" && reduction != "min")
    return g.fail("reduction '" + reduction + "' is not supported");
  Type elem = data->elementType();
  bool isFloat = isa<FloatType>(elem);
  SmallVector<Value> bounds;
  for (OpFoldResult d : g.dims(indices->value))
    bounds.push_back(g.indexValue(d));
  Value axisSize = g.indexValue(g.dim(data->value, *axis));
  Value idxTensor = indices->value, upd = updates->value;
  int64_t scatterAxis = *axis;
  Value result = loopNest(
      g.b(), g.loc(), bounds, data->value,
      [&](OpBuilder &b, Location loc, ValueRange ivs, Value acc) -> Value {
        Value raw = tensor::ExtractOp::create(b, loc, idxTensor, ivs);
        SmallVector<Value> coords(ivs.begin(), ivs.end());
        coords[scatterAxis] = normalizedIndex(b, loc, raw, axisSize);
        Value u = tensor::ExtractOp::create(b, loc, upd, ivs);
        if (reduction != "none") {
          Value old = tensor::ExtractOp::create(b, loc, acc, coords);
          if (reduction == "add")
            u = isFloat ? (Value)arith::AddFOp::create(b, loc, old, u)
                        : (Value)arith::AddIOp::create(b, loc, old, u);
          else if (reduction == "mul")
            u = isFloat ? (Value)arith::MulFOp::create(b, loc, old, u)
                        : (Value)arith::MulIOp::create(b, loc, old, u);
          else if (reduction == "max")
            u = isFloat ? (Value)arith::MaximumFOp::create(b, loc, old, u)
                        : (Value)arith::MaxSIOp::create(b, loc, old, u);
          else
            u = isFloat ? (Value)arith::MinimumFOp::create(b, loc, old, u)
                        : (Value)arith::MinSIOp::create(b, loc, old, u);
        }
        return tensor::InsertOp::create(b, loc, u, acc, coords);
      });
  g.setOutput(0, result, data->isUnsigned);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerIndexingConverters(ConverterTable &table) {
  table["Gather"] = convertGather;
  table["GatherElements"] = convertGatherElements;
  table["ScatterElements"] = convertScatterElements;
}
