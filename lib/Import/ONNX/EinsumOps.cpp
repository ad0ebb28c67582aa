//===- EinsumOps.cpp - ONNX Einsum ----------------------------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Einsum in numpy's notation: any number of operands, an explicit output
// ("ij,jk->ik") or the implicit one ("ij,jk": the subscripts that occur once,
// in ASCII order, after the "..." dimensions), "..." for leading dimensions
// that broadcast (right-aligned, numpy rules), subscripts summed over
// wherever they are missing from the output (one operand or several) and
// repeated subscripts in one operand (a diagonal: "ii->i", "bii->b").
// A subscript of size 1 in one operand broadcasts against the others, as in
// numpy and ONNX Runtime.
//
// Every subscript is one loop of a single linalg.generic (output subscripts
// first, then the summed ones) reading each operand through the map of its
// subscripts; a repeated subscript repeats the loop in the map. A product of
// two 2-d operands with one summed subscript (a matrix product in any
// layout) becomes linalg.matmul with those maps instead, so that the x·Wᵀ
// layout reaches the vectorized kernel. f16/bf16 products accumulate in f32
// and are rounded once, as MatMul does.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "llvm/ADT/STLExtras.h"

#include <cctype>

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

/// "..." inside a parsed term.
constexpr int kEllipsis = -1;

bool isLetter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// The subscripts of one term (letters, kEllipsis for "..."), or an error.
std::optional<SmallVector<int>> parseTerm(GraphImporter &g, StringRef term,
                                          StringRef equation) {
  SmallVector<int> labels;
  bool ellipsis = false;
  for (size_t i = 0; i < term.size(); ++i) {
    char c = term[i];
    if (isLetter(c)) {
      labels.push_back(c);
      continue;
    }
    if (c == '.' && term.substr(i).starts_with("...") && !ellipsis) {
      labels.push_back(kEllipsis);
      ellipsis = true;
      i += 2;
      continue;
    }
    if (c == '.')
      (void)g.fail("equation '" + equation + "': '...' must be three dots, " +
                   "at most once per term");
    else
      (void)g.fail("equation '" + equation + "': invalid character '" +
                   std::string(1, c) + "' (subscripts are letters)");
    return std::nullopt;
  }
  return labels;
}

/// The accumulator type of products of `elem`.
Type accumulatorType(GraphImporter &g, Type elem) {
  if (auto f = dyn_cast<FloatType>(elem); f && f.getWidth() < 32)
    return g.b().getF32Type();
  return elem;
}

/// The loops of a two-operand product that is a matrix product: A reads
/// (m, k) in some order, B (k, n), the output is (m, n). Returns the maps
/// for linalg.matmul, A and B swapped when the output is (n, m).
struct MatmulForm {
  bool swap = false;
  SmallVector<AffineMap> maps;
};

std::optional<MatmulForm>
matmulForm(MLIRContext *ctx, ArrayRef<SmallVector<int64_t>> operandLoops,
           int64_t outRank, int64_t numLoops) {
  if (operandLoops.size() != 2 || outRank != 2 || numLoops != 3 ||
      operandLoops[0].size() != 2 || operandLoops[1].size() != 2)
    return std::nullopt;
  // Loops 0 and 1 are the output's, loop 2 the summed one.
  auto has = [](ArrayRef<int64_t> loops, int64_t l) {
    return llvm::is_contained(loops, l);
  };
  ArrayRef<int64_t> a = operandLoops[0], b = operandLoops[1];
  MatmulForm form;
  if (has(a, 1) && has(b, 0)) {
    form.swap = true;
    std::swap(a, b);
  }
  // A: {0, 2}, B: {2, 1}, each without a repeat.
  if (!has(a, 0) || !has(a, 2) || !has(b, 1) || !has(b, 2))
    return std::nullopt;
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx),
             k = getAffineDimExpr(2, ctx);
  auto map = [&](ArrayRef<int64_t> loops) {
    SmallVector<AffineExpr> exprs;
    for (int64_t l : loops)
      exprs.push_back(l == 0 ? m : l == 1 ? n : k);
    return AffineMap::get(3, 0, exprs, ctx);
  };
  form.maps = {map(a), map(b), AffineMap::get(3, 0, {m, n}, ctx)};
  return form;
}

LogicalResult convertEinsum(GraphImporter &g) {
  const onnx::AttributeProto *attr = g.attribute("equation");
  if (!attr)
    return g.fail("missing attribute equation");
  std::string equation;
  for (char c : attr->s())
    if (!std::isspace(static_cast<unsigned char>(c)))
      equation += c;
  StringRef eq = equation;
  size_t arrow = eq.find("->");
  StringRef lhs = eq.substr(0, arrow);
  std::optional<StringRef> rhs;
  if (arrow != StringRef::npos) {
    rhs = eq.substr(arrow + 2);
    if (rhs->contains("->"))
      return g.fail("equation '" + equation + "' has more than one '->'");
  }
  SmallVector<StringRef> termTexts;
  lhs.split(termTexts, ',', /*MaxSplit=*/-1, /*KeepEmpty=*/true);
  size_t numOperands = g.numInputs();
  if (termTexts.size() != numOperands)
    return g.fail(
        "equation '" + equation + "' has " + std::to_string(termTexts.size()) +
        " input term" + (termTexts.size() == 1 ? "" : "s") + " for " +
        std::to_string(numOperands) + " input" + (numOperands == 1 ? "" : "s"));

  SmallVector<OnnxValue> operands;
  for (size_t i = 0; i < numOperands; ++i) {
    const OnnxValue *v = g.input(i);
    if (!v)
      return failure();
    operands.push_back(*v);
  }
  Type elem = operands[0].elementType();
  for (const OnnxValue &v : operands)
    if (v.elementType() != elem)
      return g.fail("operands have different element types");
  if (!isa<FloatType, IntegerType>(elem) || elem.isInteger(1))
    return g.fail("expects floating-point or integer operands");

  // Terms, and how many dimensions "..." stands for in each.
  SmallVector<SmallVector<int>> terms;
  SmallVector<int64_t> ellipsisRanks;
  int64_t ellipsisRank = 0;
  for (size_t i = 0; i < numOperands; ++i) {
    auto term = parseTerm(g, termTexts[i], equation);
    if (!term)
      return failure();
    int64_t letters = llvm::count_if(*term, [](int l) { return l >= 0; });
    bool hasEllipsis = llvm::is_contained(*term, kEllipsis);
    int64_t rank = operands[i].rank();
    if (hasEllipsis ? rank < letters : rank != letters)
      return g.fail("equation '" + equation + "': term '" + termTexts[i].str() +
                    "' does not fit input " + std::to_string(i) + " of shape " +
                    shapeString(operands[i].type().getShape()));
    ellipsisRanks.push_back(hasEllipsis ? rank - letters : 0);
    ellipsisRank = std::max(ellipsisRank, ellipsisRanks.back());
    terms.push_back(std::move(*term));
  }

  // Labels: the "..." dimensions (right-aligned across operands) are labels
  // 0 .. ellipsisRank-1, letters follow in order of appearance.
  std::map<int, int64_t> letterLabel;
  SmallVector<std::string> labelNames;
  for (int64_t e = 0; e < ellipsisRank; ++e)
    labelNames.push_back("'...' dimension " + std::to_string(e));
  std::map<int, int64_t> occurrences;
  SmallVector<SmallVector<int64_t>> operandLabels;
  for (size_t i = 0; i < numOperands; ++i) {
    SmallVector<int64_t> labels;
    for (int l : terms[i]) {
      if (l == kEllipsis) {
        for (int64_t e = 0; e < ellipsisRanks[i]; ++e)
          labels.push_back(ellipsisRank - ellipsisRanks[i] + e);
        continue;
      }
      ++occurrences[l];
      auto [it, inserted] = letterLabel.try_emplace(l, labelNames.size());
      if (inserted)
        labelNames.push_back("'" + std::string(1, static_cast<char>(l)) + "'");
      labels.push_back(it->second);
    }
    operandLabels.push_back(std::move(labels));
  }
  int64_t numLabels = labelNames.size();

  // Output labels.
  SmallVector<int64_t> outLabels;
  if (rhs) {
    auto term = parseTerm(g, *rhs, equation);
    if (!term)
      return failure();
    if (ellipsisRank > 0 && !llvm::is_contained(*term, kEllipsis))
      return g.fail("equation '" + equation +
                    "': the inputs have '...' but the output does not");
    for (int l : *term) {
      if (l == kEllipsis) {
        for (int64_t e = 0; e < ellipsisRank; ++e)
          outLabels.push_back(e);
        continue;
      }
      auto it = letterLabel.find(l);
      std::string name(1, static_cast<char>(l));
      if (it == letterLabel.end())
        return g.fail("equation '" + equation + "': output subscript '" + name +
                      "' is in no input");
      if (llvm::is_contained(outLabels, it->second))
        return g.fail("equation '" + equation + "': output subscript '" + name +
                      "' is repeated");
      outLabels.push_back(it->second);
    }
  } else {
    for (int64_t e = 0; e < ellipsisRank; ++e)
      outLabels.push_back(e);
    for (auto [letter, count] : occurrences) // std::map: ASCII order
      if (count == 1)
        outLabels.push_back(letterLabel[letter]);
  }

  // Loops: the output's labels, then the summed ones.
  SmallVector<int64_t> loopLabels(outLabels);
  for (int64_t l = 0; l < numLabels; ++l)
    if (!llvm::is_contained(outLabels, l))
      loopLabels.push_back(l);
  SmallVector<int64_t> loopOf(numLabels);
  for (auto [loop, label] : llvm::enumerate(loopLabels))
    loopOf[label] = loop;
  int64_t numLoops = loopLabels.size(), outRank = outLabels.size();

  // Sizes: a repeated subscript in one operand takes one size; across
  // operands, sizes broadcast.
  SmallVector<OpFoldResult> loopSizes(numLoops);
  for (int64_t l = 0; l < numLabels; ++l) {
    SmallVector<GraphImporter::SizeRef> refs;
    for (size_t i = 0; i < numOperands; ++i) {
      int64_t first = -1;
      for (auto [d, label] : llvm::enumerate(operandLabels[i])) {
        if (label != l)
          continue;
        refs.push_back({operands[i].value, d});
        if (first < 0) {
          first = d;
          continue;
        }
        int64_t s0 = operands[i].type().getDimSize(first);
        int64_t s1 = operands[i].type().getDimSize(d);
        if (!ShapedType::isDynamic(s0) && !ShapedType::isDynamic(s1) &&
            s0 != s1)
          return g.fail("equation '" + equation + "': subscript " +
                        labelNames[l] + " repeats in input " +
                        std::to_string(i) + " with sizes " +
                        std::to_string(s0) + " and " + std::to_string(s1));
      }
    }
    std::optional<OpFoldResult> size = g.broadcastSize(refs);
    if (!size) {
      // Two static sizes other than 1: name them.
      std::string sizes;
      for (size_t i = 0; i < numOperands; ++i)
        for (auto [d, label] : llvm::enumerate(operandLabels[i]))
          if (label == l) {
            int64_t s = operands[i].type().getDimSize(d);
            sizes += (sizes.empty() ? "" : ", ") +
                     (ShapedType::isDynamic(s) ? std::string("?")
                                               : std::to_string(s)) +
                     " in input " + std::to_string(i);
          }
      return g.fail("equation '" + equation + "': subscript " + labelNames[l] +
                    " has sizes that do not broadcast (" + sizes + ")");
    }
    loopSizes[loopOf[l]] = *size;
  }

  // Operand maps. An operand whose dynamic dimension may be 1 when the
  // model runs (not known to equal its loop's size) is broadcast first.
  MLIRContext *ctx = g.ctx();
  SmallVector<Value> values;
  SmallVector<AffineMap> maps;
  SmallVector<SmallVector<int64_t>> operandLoops;
  bool broadcasts = false;
  for (size_t i = 0; i < numOperands; ++i) {
    Value v = operands[i].value;
    SmallVector<int64_t> loops;
    for (int64_t label : operandLabels[i])
      loops.push_back(loopOf[label]);
    auto type = cast<RankedTensorType>(v.getType());
    bool ambiguous = false;
    for (auto [d, loop] : llvm::enumerate(loops))
      ambiguous |=
          type.getDimSize(d) != 1 && !g.sameSize(v, d, loopSizes[loop]);
    if (ambiguous) {
      SmallVector<OpFoldResult> shape;
      for (auto [d, loop] : llvm::enumerate(loops))
        shape.push_back(type.getDimSize(d) == 1 ? g.b().getIndexAttr(1)
                                                : loopSizes[loop]);
      v = g.broadcastTo(v, shape);
      type = cast<RankedTensorType>(v.getType());
    }
    SmallVector<AffineExpr> exprs;
    for (auto [d, loop] : llvm::enumerate(loops)) {
      std::optional<int64_t> size = getConstantIntValue(loopSizes[loop]);
      if (type.getDimSize(d) == 1 && (!size || *size != 1)) {
        exprs.push_back(getAffineConstantExpr(0, ctx));
        broadcasts = true;
      } else {
        exprs.push_back(getAffineDimExpr(loop, ctx));
      }
    }
    values.push_back(v);
    maps.push_back(AffineMap::get(numLoops, 0, exprs, ctx));
    operandLoops.push_back(std::move(loops));
  }

  OpBuilder &b = g.b();
  Type acc = accumulatorType(g, elem);
  bool isFloat = isa<FloatType>(acc);
  SmallVector<OpFoldResult> outShape(loopSizes.begin(),
                                     loopSizes.begin() + outRank);
  bool sums = numLoops > outRank;
  Value init =
      sums ? g.filled(outShape, acc, cast<TypedAttr>(b.getZeroAttr(acc)))
           : g.empty(outShape, acc);
  Value result;
  std::optional<MatmulForm> form;
  if (!broadcasts)
    form = matmulForm(ctx, operandLoops, outRank, numLoops);
  if (form) {
    Value lhsValue = values[form->swap ? 1 : 0];
    Value rhsValue = values[form->swap ? 0 : 1];
    SmallVector<Attribute> mapAttrs;
    for (AffineMap map : form->maps)
      mapAttrs.push_back(AffineMapAttr::get(map));
    result = linalg::MatmulOp::create(
                 b, g.loc(), TypeRange{init.getType()},
                 ValueRange{lhsValue, rhsValue}, ValueRange{init},
                 {b.getNamedAttr("indexing_maps", b.getArrayAttr(mapAttrs))})
                 .getResult(0);
  } else {
    SmallVector<AffineExpr> outExprs;
    for (int64_t l = 0; l < outRank; ++l)
      outExprs.push_back(getAffineDimExpr(l, ctx));
    maps.push_back(AffineMap::get(numLoops, 0, outExprs, ctx));
    SmallVector<utils::IteratorType> iterators(numLoops,
                                               utils::IteratorType::parallel);
    for (int64_t l = outRank; l < numLoops; ++l)
      iterators[l] = utils::IteratorType::reduction;
    result =
        linalg::GenericOp::create(
            b, g.loc(), TypeRange{init.getType()}, values, ValueRange{init},
            maps, iterators,
            [&](OpBuilder &bb, Location loc, ValueRange args) {
              Value p;
              for (Value x : args.drop_back()) {
                x = castScalar(bb, loc, x, acc);
                p = !p        ? x
                    : isFloat ? (Value)arith::MulFOp::create(bb, loc, p, x)
                              : (Value)arith::MulIOp::create(bb, loc, p, x);
              }
              if (sums)
                p = isFloat
                        ? (Value)arith::AddFOp::create(bb, loc, args.back(), p)
                        : (Value)arith::AddIOp::create(bb, loc, args.back(), p);
              linalg::YieldOp::create(bb, loc, p);
            })
            .getResult(0);
  }
  if (acc != elem) {
    OnnxValue wide;
    wide.value = result;
    FailureOr<Value> rounded = g.elementwise(
        {wide}, Type(), elem, [&](OpBuilder &bb, Location loc, ValueRange s) {
          return castScalar(bb, loc, s[0], elem);
        });
    if (failed(rounded))
      return failure();
    result = *rounded;
  }
  g.setOutput(0, result, operands[0].isUnsigned);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerEinsumConverters(ConverterTable &table) {
  table["Einsum"] = convertEinsum;
}
