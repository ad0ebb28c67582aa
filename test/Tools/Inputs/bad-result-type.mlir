func.func @f(%l: tensor<4x8xf32>) {
  %i, %w = moe.route %l k = 2 scoring = softmax : (tensor<4x8xf32>) -> (tensor<4x3xi32>, tensor<4x3xf32>)
  return
}
