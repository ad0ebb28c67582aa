// RUN: moe-opt %s --split-input-file --moe-outline-parallel-loops | FileCheck %s

// A 1-D parallel loop becomes a task over [begin, end) and a dispatch of
// ceil((ub - lb) / step) iterations with the loop's captures in a closure.
// CHECK:       func.func private @moe_parallel_dispatch((!llvm.ptr, i64, i64) -> (), !llvm.ptr, i64)
// CHECK-LABEL: func.func @scale
// CHECK-SAME:  (%[[BUF:.+]]: memref<?xf32>, %[[F:.+]]: f32, %[[LB:.+]]: index, %[[UB:.+]]: index)
// CHECK:       %[[STEP:.+]] = arith.constant 2 : index
// CHECK:       %[[SPAN:.+]] = arith.subi %[[UB]], %[[LB]]
// CHECK:       %[[N:.+]] = arith.ceildivsi %[[SPAN]], %[[STEP]]
// CHECK:       %[[N64:.+]] = arith.index_cast %[[N]] : index to i64
// CHECK:       %[[CL:.+]] = llvm.alloca %{{.+}} x !llvm.struct<(i64, i64, struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>, f32)>
// CHECK:       llvm.store
// CHECK:       %[[TASK:.+]] = constant @moe_parallel_task_0 : (!llvm.ptr, i64, i64) -> ()
// CHECK:       call @moe_parallel_dispatch(%[[TASK]], %[[CL]], %[[N64]])
// CHECK-NOT:   scf.parallel
// CHECK:       func.func private @moe_parallel_task_0(%[[C:.+]]: !llvm.ptr, %[[B:.+]]: i64, %[[E:.+]]: i64)
// CHECK:         llvm.load
// CHECK:         builtin.unrealized_conversion_cast %{{.+}} : !llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)> to memref<?xf32>
// CHECK:         scf.for %[[K:.+]] =
// CHECK:           %[[OFF:.+]] = arith.muli %[[K]]
// CHECK:           %[[IV:.+]] = arith.addi %{{.+}}, %[[OFF]]
// CHECK:           memref.load %{{.+}}[%[[IV]]]
// CHECK:           arith.mulf
// CHECK:           memref.store
func.func @scale(%buf: memref<?xf32>, %f: f32, %lb: index, %ub: index) {
  %c2 = arith.constant 2 : index
  scf.parallel (%i) = (%lb) to (%ub) step (%c2) {
    %v = memref.load %buf[%i] : memref<?xf32>
    %w = arith.mulf %v, %f : f32
    memref.store %w, %buf[%i] : memref<?xf32>
    scf.reduce
  }
  return
}

// -----

// Not outlined: loops with results (reductions) and 2-D loops stay as they
// are, and loops nested in an outlined loop run inside its task.
// CHECK-LABEL: func.func @kept
// CHECK:       scf.parallel (%{{.+}}, %{{.+}}) =
// CHECK:       scf.parallel (%{{.+}}) = {{.*}} -> f32
// CHECK-NOT:   moe_parallel_dispatch
func.func @kept(%buf: memref<?x?xf32>, %n: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %n) step (%c1, %c1) {
    memref.store %zero, %buf[%i, %j] : memref<?x?xf32>
    scf.reduce
  }
  %sum = scf.parallel (%i) = (%c0) to (%n) step (%c1) init (%zero) -> f32 {
    %v = memref.load %buf[%i, %i] : memref<?x?xf32>
    scf.reduce(%v : f32) {
    ^bb0(%a: f32, %b: f32):
      %s = arith.addf %a, %b : f32
      scf.reduce.return %s : f32
    }
  }
  return %sum : f32
}
