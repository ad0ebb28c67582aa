func.func @add(%a: tensor<2x3xf32> {moe.name = "a"}, %b: tensor<?x3xf32> {moe.name = "b"}) -> (tensor<2x3xf32> {moe.name = "sum"}) {
  %0 = tensor.cast %b : tensor<?x3xf32> to tensor<2x3xf32>
  %1 = arith.addf %a, %0 : tensor<2x3xf32>
  return %1 : tensor<2x3xf32>
}
