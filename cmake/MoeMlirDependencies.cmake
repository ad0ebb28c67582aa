# Detection of moe-mlir's optional dependencies.
#
# Every optional dependency sets MOE_MLIR_HAVE_<NAME> (ON/OFF) and a one-line
# reason. Parts of the project that need one are built only when it is ON; the
# summary printed at the end of configuration says what was found and what is
# therefore left out.

set(_moe_dep_names "")

function(_moe_dep name found detail)
  set(MOE_MLIR_HAVE_${name} ${found} PARENT_SCOPE)
  set(MOE_MLIR_DEP_DETAIL_${name} "${detail}" PARENT_SCOPE)
  set(_names ${_moe_dep_names})
  list(APPEND _names ${name})
  set(_moe_dep_names ${_names} PARENT_SCOPE)
endfunction()

# Python: Debian's interpreter, which sees Debian's numpy/torch/onnx packages.
if(NOT Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python3_EXECUTABLE /usr/bin/python3)
endif()
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  _moe_dep(PYTHON ON "${Python3_EXECUTABLE} (${Python3_VERSION})")
  foreach(mod numpy torch onnx pytest)
    string(TOUPPER ${mod} _upper)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import ${mod}; print(getattr(${mod}, '__version__', ''))"
      OUTPUT_VARIABLE _ver OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _rc ERROR_QUIET)
    if(_rc EQUAL 0)
      _moe_dep(PY_${_upper} ON "python module ${mod} ${_ver}")
    else()
      _moe_dep(PY_${_upper} OFF "python module ${mod} not importable by ${Python3_EXECUTABLE}")
    endif()
  endforeach()
else()
  _moe_dep(PYTHON OFF "no python3 interpreter found")
endif()

# The Python module moe_mlir (python-bindings/): pybind11's CMake package
# (Debian's pybind11-dev) and the interpreter's headers (python3-dev).
option(MOE_MLIR_ENABLE_PYTHON_BINDINGS
  "Build the moe_mlir Python module when pybind11 and the Python headers are found" ON)
if(NOT MOE_MLIR_ENABLE_PYTHON_BINDINGS)
  _moe_dep(PYTHON_BINDINGS OFF "disabled (-DMOE_MLIR_ENABLE_PYTHON_BINDINGS=OFF)")
elseif(NOT Python3_FOUND)
  _moe_dep(PYTHON_BINDINGS OFF "needs python3; the moe_mlir module is left out")
else()
  find_package(Python3 COMPONENTS Interpreter Development.Module)
  find_package(pybind11 CONFIG QUIET)
  if(NOT TARGET Python3::Module)
    _moe_dep(PYTHON_BINDINGS OFF "no Python headers (python3-dev); the moe_mlir module is left out")
  elseif(NOT pybind11_FOUND)
    _moe_dep(PYTHON_BINDINGS OFF "pybind11 not found (pybind11-dev); the moe_mlir module is left out")
  else()
    _moe_dep(PYTHON_BINDINGS ON "pybind11 ${pybind11_VERSION}, Python ${Python3_VERSION} headers")
  endif()
endif()

# CUDA toolkit (compile and link only; running needs a GPU and a driver).
set(_cuda_root "${MOE_MLIR_CUDA_ROOT}")
if(NOT _cuda_root)
  set(_cuda_root /usr/local/cuda)
endif()
if(EXISTS "${_cuda_root}/bin/nvcc" AND EXISTS "${_cuda_root}/bin/ptxas")
  set(MOE_MLIR_CUDA_ROOT "${_cuda_root}" CACHE PATH "CUDA toolkit root")
  execute_process(COMMAND "${_cuda_root}/bin/nvcc" --version
                  OUTPUT_VARIABLE _nvcc_ver ERROR_QUIET)
  string(REGEX MATCH "release [0-9]+\\.[0-9]+" _nvcc_rel "${_nvcc_ver}")
  _moe_dep(CUDA ON "${_cuda_root} (${_nvcc_rel})")
  if(EXISTS "${_cuda_root}/include/nccl.h" OR EXISTS /usr/include/nccl.h)
    _moe_dep(NCCL ON "nccl.h found")
  else()
    _moe_dep(NCCL OFF "nccl.h not found; the NCCL all-to-all backend is left out")
  endif()
else()
  _moe_dep(CUDA OFF "no nvcc/ptxas under ${_cuda_root}; GPU lowering tests are skipped")
  _moe_dep(NCCL OFF "needs CUDA")
endif()

# MPI (OpenMPI) for the expert-parallel MPI backend.
find_package(MPI QUIET COMPONENTS C)
find_program(MOE_MLIR_MPIRUN NAMES mpirun)
if(MPI_C_FOUND AND MOE_MLIR_MPIRUN)
  _moe_dep(MPI ON "${MPI_C_LIBRARIES}; ${MOE_MLIR_MPIRUN}")
else()
  _moe_dep(MPI OFF "MPI C library or mpirun not found; the MPI backend is left out")
endif()

# ONNX (C++ protobuf classes) for the ONNX importer.
find_path(MOE_MLIR_ONNX_INCLUDE onnx/onnx_pb.h)
find_library(MOE_MLIR_ONNX_LIB onnx_proto)
find_package(Protobuf QUIET)
if(MOE_MLIR_ONNX_INCLUDE AND MOE_MLIR_ONNX_LIB AND Protobuf_FOUND)
  _moe_dep(ONNX ON "${MOE_MLIR_ONNX_LIB}; protobuf ${Protobuf_VERSION}")
else()
  message(FATAL_ERROR "libonnx-dev and libprotobuf-dev are required (the ONNX "
                      "importer); run scripts/setup.sh as root to install them")
endif()

# ONNX Runtime (npm onnxruntime-node), an optional numerical oracle for tests.
find_program(MOE_MLIR_NODE NAMES node nodejs)
set(MOE_MLIR_ORT_DIR "${PROJECT_SOURCE_DIR}/third_party/ort/node_modules/onnxruntime-node"
    CACHE PATH "onnxruntime-node package directory")
if(MOE_MLIR_NODE AND EXISTS "${MOE_MLIR_ORT_DIR}/package.json")
  _moe_dep(ORT ON "${MOE_MLIR_ORT_DIR}")
else()
  _moe_dep(ORT OFF "onnxruntime-node not installed (scripts/setup.sh --with-onnxruntime); ORT comparisons are skipped")
endif()

function(moe_mlir_print_dependency_summary)
  message(STATUS "moe-mlir optional dependencies:")
  foreach(name ${_moe_dep_names})
    if(MOE_MLIR_HAVE_${name})
      set(_state "found    ")
    else()
      set(_state "MISSING  ")
    endif()
    message(STATUS "  ${name}: ${_state} ${MOE_MLIR_DEP_DETAIL_${name}}")
  endforeach()
endfunction()
