func.func @f(%l: tensor<4x8xf32>) {
  %i = moe.route %l k = oops
