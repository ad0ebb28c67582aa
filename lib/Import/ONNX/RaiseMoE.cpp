//===- RaiseMoE.cpp - decomposed MoE blocks to one node -------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Tries every TopK of the graph as the router of a MoE block
// (RaiseMatcher.h); each block recognised is replaced by one node of the
// internal domain, put where the block's last node was, so the graph stays
// topologically sorted. The block's other nodes are removed; constants it
// shares with the rest of the graph stay. Setting MOE_MLIR_DEBUG_RAISE in
// the environment prints one line per TopK on stderr: raised (and how) or
// refused (and why).
//
//===----------------------------------------------------------------------===//

#include "RaiseMoE.h"

#include "RaiseGraph.h"
#include "RaiseMatcher.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdlib>
#include <set>

using namespace moe_mlir::onnx_import;
using namespace moe_mlir::onnx_import::raise;

namespace {

void addInt(onnx::NodeProto &node, const std::string &name, int64_t v) {
  onnx::AttributeProto *a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void addFloat(onnx::NodeProto &node, const std::string &name, double v) {
  onnx::AttributeProto *a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(static_cast<float>(v));
}

void addString(onnx::NodeProto &node, const std::string &name,
               const std::string &v) {
  onnx::AttributeProto *a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

void addInts(onnx::NodeProto &node, const std::string &name,
             const std::vector<int64_t> &v) {
  onnx::AttributeProto *a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t i : v)
    a->add_ints(i);
}

/// The node that replaces the block (RaiseMoE.h documents it).
onnx::NodeProto raisedNode(const MoEMatch &m, const std::string &name) {
  onnx::NodeProto node;
  node.set_name(name);
  node.set_domain(kRaisedDomain);
  node.set_op_type("MoE");
  std::vector<std::string> inputs = {m.x,
                                     m.routerWeight,
                                     m.fc1.weight,
                                     m.fc2.weight,
                                     m.fc3 ? m.fc3->weight : "",
                                     m.fc1.bias,
                                     m.fc2.bias,
                                     m.fc3 ? m.fc3->bias : "",
                                     m.routerBias};
  while (!inputs.empty() && inputs.back().empty())
    inputs.pop_back();
  for (const std::string &in : inputs)
    node.add_input(in);
  node.add_output(m.output);
  addInt(node, "k", m.k);
  addString(node, "scoring", m.scoring);
  addInt(node, "renormalize", m.renormalize);
  if (m.epsilon != 0.0)
    addFloat(node, "renormalize_epsilon", m.epsilon);
  if (m.scale != 1.0)
    addFloat(node, "routed_scaling_factor", m.scale);
  addString(node, "activation", m.activation);
  addString(node, "gating", m.gating);
  addString(node, "router_layout", m.routerHE ? "HE" : "EH");
  auto layout = [](const LinearMatch &l) {
    return l.inOut ? "in_out" : "out_in";
  };
  std::string common = layout(m.fc1);
  addString(node, "expert_layout", common);
  if (layout(m.fc2) != common)
    addString(node, "fc2_layout", layout(m.fc2));
  if (m.fc3 && layout(*m.fc3) != common)
    addString(node, "fc3_layout", layout(*m.fc3));
  if (m.fc1.rows)
    addInts(node, "fc1_rows", *m.fc1.rows);
  if (m.fc3 && m.fc3->rows)
    addInts(node, "fc3_rows", *m.fc3->rows);
  return node;
}

std::string describe(const MoEMatch &m) {
  std::string s = "k=" + std::to_string(m.k) +
                  " E=" + std::to_string(m.experts) +
                  " H=" + std::to_string(m.hidden) + " scoring=" + m.scoring +
                  " renormalize=" + std::to_string(m.renormalize) +
                  " activation=" + m.activation + " gating=" + m.gating +
                  " removed " + std::to_string(m.remove.size()) + " nodes";
  return s;
}

/// Replaces the matched block by `node`.
void rewrite(onnx::GraphProto &graph, const MoEMatch &m, onnx::NodeProto node) {
  std::set<int> remove(m.remove.begin(), m.remove.end());
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  for (int i = 0; i < graph.node_size(); ++i) {
    if (i == m.result)
      nodes.Add()->Swap(&node);
    else if (!remove.count(i))
      nodes.Add()->Swap(graph.mutable_node(i));
  }
  graph.mutable_node()->Swap(&nodes);
}

} // namespace

int moe_mlir::onnx_import::raiseDecomposedMoE(onnx::GraphProto &graph) {
  bool debug = std::getenv("MOE_MLIR_DEBUG_RAISE") != nullptr;
  std::set<std::string> tried;
  int raised = 0;
  while (true) {
    GraphIndex index(graph);
    bool changed = false;
    for (int i = 0; i < graph.node_size() && !changed; ++i) {
      const onnx::NodeProto &node = graph.node(i);
      if (node.op_type() != "TopK" ||
          !(node.domain().empty() || node.domain() == "ai.onnx") ||
          node.output_size() < 1)
        continue;
      std::string key;
      for (const std::string &out : node.output())
        key += out + '\n';
      if (!tried.insert(key).second)
        continue;
      std::string why;
      std::optional<MoEMatch> m = matchMoEBlock(index, i, why);
      std::string label =
          node.name().empty() ? key.substr(0, key.find('\n')) : node.name();
      if (!m) {
        if (debug)
          llvm::errs() << "raise-moe: TopK '" << label
                       << "': not raised: " << why << "\n";
        continue;
      }
      if (debug)
        llvm::errs() << "raise-moe: TopK '" << label
                     << "': raised: " << describe(*m) << "\n";
      std::string name = graph.node(m->result).name();
      rewrite(graph, *m,
              raisedNode(*m, (name.empty() ? m->output : name) + "/moe"));
      ++raised;
      changed = true;
    }
    if (!changed)
      break;
  }
  return raised;
}
