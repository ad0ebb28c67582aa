# -*- Python -*-
# lit configuration of moe-mlir's regression tests.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MOE_MLIR"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "README.md", "lit.cfg.py", "lit.site.cfg.py", "Inputs"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moe_mlir_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%moe_src", config.moe_mlir_src_root))
config.substitutions.append(("%moe_obj", config.moe_mlir_obj_root))
config.substitutions.append(("%python", config.python_executable))
# Where the moe_mlir Python package is in the build tree (PYTHONPATH).
config.substitutions.append(("%moe_python_packages", config.moe_mlir_python_packages))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moe_mlir_tools_dir, config.llvm_tools_dir]
tools = [
    ToolSubst("moe-opt", unresolved="fatal"),
    ToolSubst("moe-import", unresolved="fatal"),
    ToolSubst("moe-run", unresolved="fatal"),
    ToolSubst("moe-compile", unresolved="fatal"),
    ToolSubst("moe-runtime-unittests", unresolved="fatal"),
    ToolSubst("moe-safetensors-unittests", unresolved="fatal"),
    ToolSubst("moe-weights-unittests", unresolved="fatal"),
    ToolSubst("moe-onnx-file-unittests", unresolved="fatal"),
    ToolSubst("moe-placement-unittests", unresolved="fatal"),
    ToolSubst("moe-plan", unresolved="fatal"),
    ToolSubst("moe-capi-test", unresolved="fatal"),
    # Built only with libFuzzer support (tests that use them REQUIRE it).
    ToolSubst("moe-json-fuzz", unresolved="ignore"),
    ToolSubst("moe-safetensors-fuzz", unresolved="ignore"),
    ToolSubst("moe-onnx-file-fuzz", unresolved="ignore"),
    ToolSubst("moe-hf-config-fuzz", unresolved="ignore"),
]
llvm_config.add_tool_substitutions(tools, tool_dirs)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# Features that optional dependencies provide; tests that need one say
# `REQUIRES: <feature>` and are reported as unsupported (skipped) without it.
for feature, present in [
    ("cuda", config.moe_mlir_have_cuda),
    ("mpi", config.moe_mlir_have_mpi),
    ("onnx", config.moe_mlir_have_onnx),
    ("torch", config.moe_mlir_have_torch),
    ("onnxruntime", config.moe_mlir_have_ort),
    ("libfuzzer", config.moe_mlir_have_libfuzzer),
    # The moe_mlir Python module (pybind11-dev and python3-dev found).
    ("python-bindings", config.moe_mlir_have_python_bindings),
]:
    if present:
        config.available_features.add(feature)

# mpirun with options that work on a loopback-only machine as root (shared
# memory and self transports), for the expert-parallel tests under MPI;
# empty when the all-to-all MPI backend was not built or mpirun is missing.
import shutil as _shutil

_ep_mpirun = ""
if getattr(config, "moe_mlir_have_a2a_mpi", False) and _shutil.which("mpirun"):
    _ep_mpirun = ("mpirun --allow-run-as-root --oversubscribe --mca btl "
                  "self,vader --mca btl_vader_single_copy_mechanism none")
config.substitutions.append(("%ep_mpirun", _ep_mpirun))
