//===- ModelBuilder.cpp - a decoder-only MoE model as IR ------------------===//
//
// Part of moe-mlir's Hugging Face frontend.
//
// The decoder (HF Mixtral / Qwen2-MoE / Qwen3-MoE / DeepSeek-V2/V3):
//   h = embed_tokens[input_ids]
//   per layer: h += attention(RMSNorm(h)); h += mlp(RMSNorm(h))
//   logits = RMSNorm(h) · lm_headᵀ, for the last logits_to_keep rows of h
//            (all rows when it is 0)
// Attention is mla.gqa_attention or mla.attention, the sparse MLP the moe
// ops (route, dispatch, expert_ffn, combine, shared_expert), a dense MLP
// moe.shared_expert; embeddings, RMSNorm, the residual adds and the
// language-model head are upstream linalg/arith on tensors. Activations are
// f32 whatever the weights' type (the RMSNorm and router math of these
// models is f32 anyway).
//
//===----------------------------------------------------------------------===//

#include "ModelBuilder.h"

#include "TensorLayout.h"

#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::hf;

namespace {

using utils::IteratorType;

class DecoderBuilder {
public:
  DecoderBuilder(MLIRContext &ctx, const ModelConfig &config,
          const WeightTypeFn &weightType)
      : ctx_(ctx), c_(config), weightType_(weightType), b_(&ctx),
        loc_(UnknownLoc::get(&ctx)) {}

  OwningOpRef<ModuleOp> build();

private:
  // Types.
  Type f32() { return b_.getF32Type(); }
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type element) {
    return RankedTensorType::get(shape, element);
  }
  RankedTensorType hiddenType() {
    return tensor({ShapedType::kDynamic, c_.hiddenSize}, f32());
  }
  RankedTensorType weightTensorType(const WeightDecl &w,
                                    const std::string &fullName) {
    Type element = w.needsF32 ? f32() : weightType_(fullName);
    return tensor(w.shape, element);
  }
  /// The argument types of layer `layer`'s weights. The operands of one op
  /// must share an element type (the attention's projections and norms, the
  /// experts, a shared or dense MLP): where a checkpoint mixes types within
  /// such a group, the group takes the type of its first tensor and the
  /// runtime converts the others when it binds them.
  SmallVector<Type> layerWeightTypes(int64_t layer,
                                     const std::vector<WeightDecl> &decls) {
    auto group = [](const std::string &name) -> std::string {
      if (name.rfind("self_attn.", 0) == 0)
        return "self_attn";
      if (name.find(".experts.") != std::string::npos)
        return "experts";
      if (name.find("shared_expert") != std::string::npos)
        return "shared";
      if (name.rfind("mlp.gate_proj", 0) == 0 ||
          name.rfind("mlp.up_proj", 0) == 0 ||
          name.rfind("mlp.down_proj", 0) == 0)
        return "dense";
      return name; // a group of its own
    };
    llvm::StringMap<Type> groupType;
    SmallVector<Type> types;
    for (const WeightDecl &d : decls) {
      RankedTensorType own =
          weightTensorType(d, layerTensorName(layer, d.name));
      auto [it, inserted] =
          groupType.try_emplace(group(d.name), own.getElementType());
      types.push_back(RankedTensorType::get(
          own.getShape(), d.needsF32 ? own.getElementType() : it->second));
    }
    return types;
  }
  SmallVector<RankedTensorType> cacheTypes() {
    SmallVector<RankedTensorType> types;
    for (const CacheDecl &cache : layerCaches(c_)) {
      SmallVector<int64_t> shape = {ShapedType::kDynamic};
      shape.append(cache.trailingShape.begin(), cache.trailingShape.end());
      types.push_back(tensor(shape, f32()));
    }
    return types;
  }

  // Small builders.
  Value dim(Value t, int64_t d) {
    return tensor::DimOp::create(b_, loc_, t, d);
  }
  Value f32Const(double v) {
    return arith::ConstantOp::create(b_, loc_, b_.getF32FloatAttr(v));
  }
  Value toF32(Value v) {
    if (v.getType() == f32())
      return v;
    return arith::ExtFOp::create(b_, loc_, f32(), v);
  }
  /// An empty [S, n] f32 tensor, S taken from dim 0 of `rows`.
  Value emptyRows(Value rows, int64_t n) {
    return tensor::EmptyOp::create(b_, loc_, ArrayRef<OpFoldResult>{
                                                 OpFoldResult(dim(rows, 0)),
                                                 b_.getIndexAttr(n)},
                                   f32());
  }
  Value zeroRows(Value rows, int64_t n) {
    Value empty = emptyRows(rows, n);
    return linalg::FillOp::create(b_, loc_, f32Const(0.0), empty).result();
  }
  Operation *genericOp(StringRef name, ValueRange operands,
                       TypeRange results, ArrayRef<NamedAttribute> attrs,
                       ArrayRef<int32_t> segments = {}) {
    OperationState state(loc_, name);
    state.addOperands(operands);
    state.addTypes(results);
    state.addAttributes(attrs);
    if (!segments.empty())
      state.addAttribute("operandSegmentSizes",
                         b_.getDenseI32ArrayAttr(segments));
    return b_.create(state);
  }
  NamedAttribute attr(StringRef name, Attribute value) {
    return b_.getNamedAttr(name, value);
  }
  Attribute i64(int64_t v) { return b_.getI64IntegerAttr(v); }
  Attribute f32Attr(double v) { return b_.getF32FloatAttr(v); }

  // Model pieces.
  Value embed(Value ids, Value table);
  Value rmsNorm(Value x, Value weight, double eps);
  Value lmHead(Value x, Value weight);
  void attention(Value x, ValueRange caches,
                 const llvm::StringMap<Value> &w,
                 SmallVectorImpl<Value> &results);
  Value denseMlp(Value x, const llvm::StringMap<Value> &w);
  Value sparseMlp(Value x, const llvm::StringMap<Value> &w);
  func::FuncOp layerFunction(int64_t layer, ModuleOp module);

  MLIRContext &ctx_;
  const ModelConfig &c_;
  const WeightTypeFn &weightType_;
  OpBuilder b_;
  Location loc_;
  llvm::StringMap<func::FuncOp> layerFunctions_; // by signature
};

} // namespace

Value DecoderBuilder::embed(Value ids, Value table) {
  MLIRContext *ctx = &ctx_;
  AffineExpr s, h;
  bindDims(ctx, s, h);
  Value init = emptyRows(ids, c_.hiddenSize);
  SmallVector<AffineMap> maps = {AffineMap::get(2, 0, {s}, ctx),
                                 AffineMap::get(2, 0, {s, h}, ctx)};
  auto op = linalg::GenericOp::create(
      b_, loc_, TypeRange{init.getType()}, ValueRange{ids}, ValueRange{init},
      maps, SmallVector<IteratorType>{IteratorType::parallel,
                                      IteratorType::parallel},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value row = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                               args[0]);
        Value col = linalg::IndexOp::create(b, loc, 1);
        Value v = tensor::ExtractOp::create(b, loc, table,
                                            ValueRange{row, col});
        if (v.getType() != b.getF32Type())
          v = arith::ExtFOp::create(b, loc, b.getF32Type(), v);
        linalg::YieldOp::create(b, loc, v);
      });
  return op.getResult(0);
}

Value DecoderBuilder::rmsNorm(Value x, Value weight, double eps) {
  MLIRContext *ctx = &ctx_;
  AffineExpr s, h;
  bindDims(ctx, s, h);
  auto width = cast<RankedTensorType>(x.getType()).getDimSize(1);
  // Σ x² per row.
  Value sumInit = linalg::FillOp::create(
                      b_, loc_, f32Const(0.0),
                      tensor::EmptyOp::create(
                          b_, loc_, ArrayRef<OpFoldResult>{dim(x, 0)}, f32())
                          .getResult())
                      .result();
  Value sumSq =
      linalg::GenericOp::create(
          b_, loc_, TypeRange{sumInit.getType()}, ValueRange{x},
          ValueRange{sumInit},
          SmallVector<AffineMap>{AffineMap::get(2, 0, {s, h}, ctx),
                                 AffineMap::get(2, 0, {s}, ctx)},
          SmallVector<IteratorType>{IteratorType::parallel,
                                    IteratorType::reduction},
          [&](OpBuilder &b, Location loc, ValueRange args) {
            Value sq = arith::MulFOp::create(b, loc, args[0], args[0]);
            linalg::YieldOp::create(
                b, loc, ValueRange{arith::AddFOp::create(b, loc, args[1], sq)});
          })
          .getResult(0);
  // x · rsqrt(Σx²/H + eps) · w, in that order (HF's).
  Value init = emptyRows(x, width);
  Value count = f32Const(static_cast<double>(width));
  Value epsilon = f32Const(eps);
  Value one = f32Const(1.0);
  return linalg::GenericOp::create(
             b_, loc_, TypeRange{init.getType()}, ValueRange{x, sumSq, weight},
             ValueRange{init},
             SmallVector<AffineMap>{AffineMap::get(2, 0, {s, h}, ctx),
                                    AffineMap::get(2, 0, {s}, ctx),
                                    AffineMap::get(2, 0, {h}, ctx),
                                    AffineMap::get(2, 0, {s, h}, ctx)},
             SmallVector<IteratorType>{IteratorType::parallel,
                                       IteratorType::parallel},
             [&](OpBuilder &b, Location loc, ValueRange args) {
               Value mean = arith::DivFOp::create(b, loc, args[1], count);
               // 1/sqrt rather than math.rsqrt, which libm lacks.
               Value r = arith::DivFOp::create(
                   b, loc, one,
                   math::SqrtOp::create(
                       b, loc, arith::AddFOp::create(b, loc, mean, epsilon)));
               Value w = args[2];
               if (w.getType() != b.getF32Type())
                 w = arith::ExtFOp::create(b, loc, b.getF32Type(), w);
               Value v = arith::MulFOp::create(
                   b, loc, arith::MulFOp::create(b, loc, args[0], r), w);
               linalg::YieldOp::create(b, loc, v);
             })
      .getResult(0);
}

Value DecoderBuilder::lmHead(Value x, Value weight) {
  MLIRContext *ctx = &ctx_;
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  Value init = zeroRows(x, c_.vocabSize);
  SmallVector<Attribute> maps = {
      AffineMapAttr::get(AffineMap::get(3, 0, {m, k}, ctx)),
      AffineMapAttr::get(AffineMap::get(3, 0, {n, k}, ctx)),
      AffineMapAttr::get(AffineMap::get(3, 0, {m, n}, ctx))};
  auto matmul = linalg::MatmulOp::create(
      b_, loc_, TypeRange{init.getType()}, ValueRange{x, weight},
      ValueRange{init}, {attr("indexing_maps", b_.getArrayAttr(maps))});
  return matmul.getResult(0);
}

void DecoderBuilder::attention(Value x, ValueRange caches,
                        const llvm::StringMap<Value> &w,
                        SmallVectorImpl<Value> &results) {
  SmallVector<Type> types = {hiddenType(), caches[0].getType(),
                             caches[1].getType()};
  auto get = [&](StringRef name) { return w.lookup(name); };
  Operation *op;
  if (c_.isMla()) {
    SmallVector<Value> operands = {x, caches[0], caches[1]};
    SmallVector<int32_t> segments = {1, 1, 1};
    if (c_.qLoraRank) {
      operands.append({get("self_attn.q_a_proj.weight"),
                       get("self_attn.q_a_layernorm.weight"),
                       get("self_attn.q_b_proj.weight")});
      segments.append({0, 1, 1, 1});
    } else {
      operands.push_back(get("self_attn.q_proj.weight"));
      segments.append({1, 0, 0, 0});
    }
    operands.append({get("self_attn.kv_a_proj_with_mqa.weight"),
                     get("self_attn.kv_a_layernorm.weight"),
                     get("self_attn.kv_b_proj.weight"),
                     get("self_attn.o_proj.weight")});
    segments.append({1, 1, 1, 1});
    SmallVector<NamedAttribute> attrs = {
        attr("num_heads", i64(c_.numHeads)),
        attr("qk_nope_head_dim", i64(c_.qkNopeHeadDim)),
        attr("qk_rope_head_dim", i64(c_.qkRopeHeadDim)),
        attr("v_head_dim", i64(c_.vHeadDim)),
        attr("rope_theta", b_.getF64FloatAttr(c_.ropeTheta))};
    if (c_.ropeInterleave)
      attrs.push_back(attr("rope_interleave", b_.getUnitAttr()));
    if (c_.yarn && c_.family == ModelFamily::DeepseekV2) {
      // transformers' DeepSeek-V2 keeps qk_head_dim^-0.5 under YaRN (V3 and
      // DeepSeek's own V2 code multiply in mscale(factor, mscale_all_dim)²).
      attrs.push_back(attr(
          "softmax_scale",
          f32Attr(1.0 / std::sqrt(static_cast<double>(c_.qkNopeHeadDim +
                                                      c_.qkRopeHeadDim)))));
    }
    if (c_.yarn) {
      const YarnConfig &y = *c_.yarn;
      attrs.push_back(attr(
          "yarn", mla::YarnAttr::get(&ctx_, llvm::APFloat(y.factor),
                                     y.originalMaxPositionEmbeddings,
                                     llvm::APFloat(y.betaFast),
                                     llvm::APFloat(y.betaSlow),
                                     llvm::APFloat(y.mscale),
                                     llvm::APFloat(y.mscaleAllDim))));
    }
    op = genericOp("mla.attention", operands, types, attrs, segments);
  } else {
    SmallVector<Value> operands = {x,
                                   caches[0],
                                   caches[1],
                                   get("self_attn.q_proj.weight"),
                                   get("self_attn.k_proj.weight"),
                                   get("self_attn.v_proj.weight"),
                                   get("self_attn.o_proj.weight")};
    SmallVector<int32_t> segments = {1, 1, 1, 1, 1, 1, 1};
    if (c_.qkvBias) {
      operands.append({get("self_attn.q_proj.bias"),
                       get("self_attn.k_proj.bias"),
                       get("self_attn.v_proj.bias")});
      segments.append({1, 1, 1});
    } else {
      segments.append({0, 0, 0});
    }
    if (c_.qkNorm) {
      operands.append({get("self_attn.q_norm.weight"),
                       get("self_attn.k_norm.weight")});
      segments.append({1, 1});
    } else {
      segments.append({0, 0});
    }
    SmallVector<NamedAttribute> attrs = {
        attr("num_heads", i64(c_.numHeads)),
        attr("num_kv_heads", i64(c_.numKvHeads)),
        attr("head_dim", i64(c_.headDim)),
        attr("rope_theta", b_.getF64FloatAttr(c_.ropeTheta)),
        attr("rms_norm_eps", f32Attr(c_.rmsNormEps))};
    if (c_.slidingWindow)
      attrs.push_back(attr("sliding_window", i64(*c_.slidingWindow)));
    op = genericOp("mla.gqa_attention", operands, types, attrs, segments);
  }
  results.append(op->result_begin(), op->result_end());
}

Value DecoderBuilder::denseMlp(Value x, const llvm::StringMap<Value> &w) {
  auto act = moe::ActivationAttr::get(&ctx_, moe::Activation::Silu);
  auto gating = moe::GatingAttr::get(&ctx_, moe::Gating::Separate);
  return genericOp("moe.shared_expert",
                   {x, w.lookup("mlp.gate_proj.weight"),
                    w.lookup("mlp.down_proj.weight"),
                    w.lookup("mlp.up_proj.weight")},
                   {hiddenType()},
                   {attr("activation", act), attr("gating", gating)},
                   {1, 1, 1, 1, 0, 0, 0, 0})
      ->getResult(0);
}

Value DecoderBuilder::sparseMlp(Value x, const llvm::StringMap<Value> &w) {
  bool mixtral = c_.family == ModelFamily::Mixtral;
  std::string prefix = mixtral ? "block_sparse_moe." : "mlp.";
  int64_t e = c_.numExperts, k = c_.topK;
  const RouterConfig &r = c_.router;

  // Router.
  SmallVector<Value> operands = {x, w.lookup(prefix + "gate.weight")};
  SmallVector<int32_t> segments = {1, 1, 0, 0};
  if (r.selectionBias) {
    operands.push_back(w.lookup("mlp.gate.e_score_correction_bias"));
    segments[3] = 1;
  }
  SmallVector<NamedAttribute> attrs = {
      attr("k", i64(k)),
      attr("scoring", moe::ScoringAttr::get(&ctx_, r.sigmoid
                                                       ? moe::Scoring::Sigmoid
                                                       : moe::Scoring::Softmax))};
  if (r.renormalize) {
    attrs.push_back(attr("renormalize", b_.getUnitAttr()));
    if (r.renormalizeEpsilon != 0)
      attrs.push_back(attr("renormalize_epsilon", f32Attr(r.renormalizeEpsilon)));
  }
  if (r.scalingFactor != 1.0)
    attrs.push_back(attr("routed_scaling_factor", f32Attr(r.scalingFactor)));
  if (r.nGroup > 1) {
    attrs.push_back(attr("n_group", i64(r.nGroup)));
    attrs.push_back(attr("topk_group", i64(r.topkGroup)));
    attrs.push_back(attr(
        "group_score",
        moe::GroupScoreAttr::get(&ctx_, r.groupTop2Sum
                                            ? moe::GroupScore::Top2Sum
                                            : moe::GroupScore::Max)));
  }
  Type i32 = b_.getI32Type();
  Operation *route = genericOp(
      "moe.route", operands,
      {tensor({ShapedType::kDynamic, k}, i32),
       tensor({ShapedType::kDynamic, k}, f32())},
      attrs, segments);

  // Dispatch, experts, combine.
  auto dropless =
      moe::DispatchModeAttr::get(&ctx_, moe::DispatchMode::Dropless);
  Operation *dispatch = genericOp(
      "moe.dispatch", {x, route->getResult(0)},
      {hiddenType(), tensor({e}, i32), tensor({ShapedType::kDynamic, k}, i32)},
      {attr("mode", dropless), attr("num_experts", i64(e))});
  auto silu = moe::ActivationAttr::get(&ctx_, moe::Activation::Silu);
  auto separate = moe::GatingAttr::get(&ctx_, moe::Gating::Separate);
  std::string experts = prefix + "experts.*.";
  Value gate = w.lookup(experts + (mixtral ? "w1.weight" : "gate_proj.weight"));
  Value up = w.lookup(experts + (mixtral ? "w3.weight" : "up_proj.weight"));
  Value down = w.lookup(experts + (mixtral ? "w2.weight" : "down_proj.weight"));
  Operation *ffn = genericOp(
      "moe.expert_ffn",
      {dispatch->getResult(0), dispatch->getResult(1), gate, down, up},
      {hiddenType()}, {attr("activation", silu), attr("gating", separate)},
      {1, 1, 1, 1, 1, 0, 0, 0});
  Value routed =
      genericOp("moe.combine",
                {ffn->getResult(0), dispatch->getResult(2),
                 route->getResult(1)},
                {hiddenType()}, {attr("mode", dropless)})
          ->getResult(0);
  if (c_.sharedIntermediateSize <= 0)
    return routed;

  // Shared expert(s).
  std::string shared = c_.sharedExpertGate ? "mlp.shared_expert."
                                           : "mlp.shared_experts.";
  SmallVector<Value> sharedOperands = {x, w.lookup(shared + "gate_proj.weight"),
                                       w.lookup(shared + "down_proj.weight"),
                                       w.lookup(shared + "up_proj.weight")};
  SmallVector<int32_t> sharedSegments = {1, 1, 1, 1, 0, 0, 0, 0};
  if (c_.sharedExpertGate) {
    sharedOperands.push_back(w.lookup("mlp.shared_expert_gate.weight"));
    sharedSegments.back() = 1;
  }
  Value sharedOut =
      genericOp("moe.shared_expert", sharedOperands, {hiddenType()},
                {attr("activation", silu), attr("gating", separate)},
                sharedSegments)
          ->getResult(0);
  return arith::AddFOp::create(b_, loc_, routed, sharedOut);
}

func::FuncOp DecoderBuilder::layerFunction(int64_t layer, ModuleOp module) {
  std::vector<WeightDecl> decls = layerWeights(c_, layer);
  SmallVector<Type> inputs = {hiddenType()};
  for (RankedTensorType t : cacheTypes())
    inputs.push_back(t);
  inputs.append(layerWeightTypes(layer, decls));
  SmallVector<Type> outputs = {hiddenType()};
  for (RankedTensorType t : cacheTypes())
    outputs.push_back(t);
  auto type = FunctionType::get(&ctx_, inputs, outputs);

  // Layers of the same kind and argument types share a function.
  bool sparse = c_.isMoeLayer(layer);
  std::string key;
  llvm::raw_string_ostream os(key);
  os << (sparse ? "moe" : "dense") << type;
  for (const WeightDecl &d : decls)
    os << ' ' << d.name;
  if (func::FuncOp existing = layerFunctions_.lookup(key))
    return existing;

  std::string name = sparse ? "moe_decoder_layer" : "dense_decoder_layer";
  if (module.lookupSymbol(name))
    name += "_" + std::to_string(layer);
  OpBuilder::InsertionGuard guard(b_);
  b_.setInsertionPointToEnd(module.getBody());
  auto fn = func::FuncOp::create(b_, loc_, name, type);
  fn.setPrivate();
  Block *body = fn.addEntryBlock();
  b_.setInsertionPointToStart(body);

  Value hidden = body->getArgument(0);
  SmallVector<Value> caches = {body->getArgument(1), body->getArgument(2)};
  llvm::StringMap<Value> w;
  for (auto [i, d] : llvm::enumerate(decls))
    w[d.name] = body->getArgument(3 + i);

  Value normed = rmsNorm(hidden, w.lookup("input_layernorm.weight"),
                         c_.rmsNormEps);
  SmallVector<Value> attn;
  attention(normed, caches, w, attn);
  Value h1 = arith::AddFOp::create(b_, loc_, hidden, attn[0]);
  Value normed2 = rmsNorm(h1, w.lookup("post_attention_layernorm.weight"),
                          c_.rmsNormEps);
  Value mlp = sparse ? sparseMlp(normed2, w) : denseMlp(normed2, w);
  Value h2 = arith::AddFOp::create(b_, loc_, h1, mlp);
  func::ReturnOp::create(b_, loc_, ValueRange{h2, attn[1], attn[2]});
  layerFunctions_[key] = fn;
  return fn;
}

OwningOpRef<ModuleOp> DecoderBuilder::build() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc_);
  b_.setInsertionPointToEnd(module->getBody());

  // The entry's arguments: ids, caches, then every weight.
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  auto addArg = [&](Type t, const std::string &name) {
    argTypes.push_back(t);
    argNames.push_back(name);
    return argTypes.size() - 1;
  };
  addArg(tensor({ShapedType::kDynamic}, b_.getI64Type()), "input_ids");
  std::vector<CacheDecl> cacheDecls = layerCaches(c_);
  SmallVector<RankedTensorType> cacheTys = cacheTypes();
  for (int64_t l = 0; l < c_.numLayers; ++l)
    for (auto [i, cache] : llvm::enumerate(cacheDecls))
      addArg(cacheTys[i], "cache." + std::to_string(l) + "." + cache.name);
  WeightDecl embedDecl = embeddingWeight(c_);
  size_t embedArg = addArg(weightTensorType(embedDecl, embedDecl.name),
                           embedDecl.name);
  SmallVector<SmallVector<size_t>> layerArgs(c_.numLayers);
  for (int64_t l = 0; l < c_.numLayers; ++l) {
    std::vector<WeightDecl> decls = layerWeights(c_, l);
    SmallVector<Type> types = layerWeightTypes(l, decls);
    for (auto [d, type] : llvm::zip_equal(decls, types))
      layerArgs[l].push_back(addArg(type, layerTensorName(l, d.name)));
  }
  WeightDecl normDecl = finalNormWeight(c_);
  size_t normArg = addArg(weightTensorType(normDecl, normDecl.name),
                          normDecl.name);
  size_t headArg = embedArg;
  if (!c_.tieWordEmbeddings) {
    WeightDecl headDecl = lmHeadWeight(c_);
    headArg = addArg(weightTensorType(headDecl, headDecl.name), headDecl.name);
  }
  // HF's logits_to_keep: logits of the last N positions only (generation
  // needs one row of a prompt's logits); 0 keeps them all.
  size_t keepArg =
      addArg(tensor({1}, b_.getI64Type()), "logits_to_keep");

  SmallVector<Type> resultTypes = {
      tensor({ShapedType::kDynamic, c_.vocabSize}, f32())};
  SmallVector<std::string> resultNames = {"logits"};
  for (int64_t l = 0; l < c_.numLayers; ++l)
    for (auto [i, cache] : llvm::enumerate(cacheDecls)) {
      resultTypes.push_back(cacheTys[i]);
      resultNames.push_back("cache." + std::to_string(l) + "." + cache.name);
    }

  auto forward = func::FuncOp::create(
      b_, loc_, "forward", FunctionType::get(&ctx_, argTypes, resultTypes));
  // All at once: setting them one by one rebuilds the array each time.
  auto nameAttrs = [&](ArrayRef<std::string> names) {
    SmallVector<DictionaryAttr> attrs;
    for (const std::string &name : names)
      attrs.push_back(b_.getDictionaryAttr(
          {attr("moe.name", b_.getStringAttr(name))}));
    return attrs;
  };
  forward.setAllArgAttrs(nameAttrs(argNames));
  forward.setAllResultAttrs(nameAttrs(resultNames));
  Block *entry = forward.addEntryBlock();

  // Layer functions go after @forward.
  SmallVector<func::FuncOp> layerFns;
  for (int64_t l = 0; l < c_.numLayers; ++l)
    layerFns.push_back(layerFunction(l, *module));

  b_.setInsertionPointToStart(entry);
  Value hidden = embed(entry->getArgument(0), entry->getArgument(embedArg));
  SmallVector<Value> newCaches;
  size_t numCaches = cacheDecls.size();
  for (int64_t l = 0; l < c_.numLayers; ++l) {
    SmallVector<Value> operands = {hidden};
    for (size_t i = 0; i < numCaches; ++i)
      operands.push_back(entry->getArgument(1 + l * numCaches + i));
    for (size_t arg : layerArgs[l])
      operands.push_back(entry->getArgument(arg));
    auto call = func::CallOp::create(b_, loc_, layerFns[l], operands);
    hidden = call.getResult(0);
    for (size_t i = 0; i < numCaches; ++i)
      newCaches.push_back(call.getResult(1 + i));
  }
  // Rows [S - N, S) when 0 < N < S, else all S.
  Value rows = dim(hidden, 0);
  Value keep = arith::IndexCastOp::create(
      b_, loc_, b_.getIndexType(),
      tensor::ExtractOp::create(b_, loc_, entry->getArgument(keepArg),
                                ValueRange{arith::ConstantIndexOp::create(
                                    b_, loc_, 0)}));
  Value zero = arith::ConstantIndexOp::create(b_, loc_, 0);
  Value partial = arith::AndIOp::create(
      b_, loc_,
      arith::CmpIOp::create(b_, loc_, arith::CmpIPredicate::sgt, keep, zero),
      arith::CmpIOp::create(b_, loc_, arith::CmpIPredicate::slt, keep, rows));
  Value kept = arith::SelectOp::create(b_, loc_, partial, keep, rows);
  Value first = arith::SubIOp::create(b_, loc_, rows, kept);
  int64_t width = cast<RankedTensorType>(hidden.getType()).getDimSize(1);
  Value last = tensor::ExtractSliceOp::create(
      b_, loc_, tensor({ShapedType::kDynamic, width}, f32()), hidden,
      ArrayRef<OpFoldResult>{first, b_.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{kept, b_.getIndexAttr(width)},
      ArrayRef<OpFoldResult>{b_.getIndexAttr(1), b_.getIndexAttr(1)});
  Value normed = rmsNorm(last, entry->getArgument(normArg), c_.rmsNormEps);
  Value logits = lmHead(normed, entry->getArgument(headArg));
  SmallVector<Value> results = {logits};
  results.append(newCaches);
  func::ReturnOp::create(b_, loc_, results);
  return module;
}

OwningOpRef<ModuleOp> moe_mlir::hf::buildModel(MLIRContext &context,
                                               const ModelConfig &config,
                                               const WeightTypeFn &weightType) {
  return DecoderBuilder(context, config, weightType).build();
}
