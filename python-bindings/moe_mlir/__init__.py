"""moe-mlir from Python: import Mixture-of-Experts models (Hugging Face
checkpoints, ONNX files, MLIR), run moe-opt pass pipelines on them, compile
them for the CPU and run them on NumPy arrays, or generate tokens.

    import numpy as np
    import moe_mlir

    module = moe_mlir.import_model("path/to/hf-checkpoint")  # or .onnx / .mlir
    model = module.compile()                 # what moe-compile does
    logits = model.logits([1, 2, 3])         # float32 [3, vocab]
    ids = model.generate([1, 2, 3], 16)      # int64 [16], greedy
    model.save("model.so")                   # moe-run model.so --tokens ...

    onnx = moe_mlir.import_onnx("moe.onnx").compile()
    outputs = onnx(hidden_states=np.ones((5, 32), np.float32))  # {name: array}

Every failure raises moe_mlir.Error (a RuntimeError) with the one-line
message moe-compile / moe-run print; InvalidArgumentError (also a
ValueError) for the caller's mistakes, UnsupportedError (also a
NotImplementedError) when a request needs what this library cannot do:
target="cuda" is refused with it (there is no GPU code generation; compile
for "cpu").
See docs/python.md.
"""

import os as _os

from ._core import __version__  # noqa: F401  (the project's version)
from ._core import (
    CompiledModel,
    Error,
    InvalidArgumentError,
    LanguageModel,
    Module,
    TensorSpec,
    UnsupportedError,
    import_hf,
    import_onnx,
    load,
    num_threads,
    parse,
    set_num_threads,
)
from ._core import _model_kind

__all__ = [
    "CompiledModel",
    "Error",
    "InvalidArgumentError",
    "LanguageModel",
    "Module",
    "TensorSpec",
    "UnsupportedError",
    "import_hf",
    "import_model",
    "import_onnx",
    "load",
    "num_threads",
    "parse",
    "set_num_threads",
]


def import_model(path, **options):
    """Imports a model the way moe-compile reads its input: a directory is a
    Hugging Face checkpoint (import_hf), a file named *.onnx an ONNX model
    (import_onnx), anything else MLIR (Module.from_file). Keyword options go
    to the importer (shape_only=, raise_moe=). A compiled library (*.so) is
    not a module: load it with moe_mlir.load."""
    kind = _model_kind(path)
    if kind == "hf":
        return import_hf(path, **options)
    if kind == "onnx":
        return import_onnx(path, **options)
    if kind == "library":
        raise InvalidArgumentError(
            f"{_os.fspath(path)} is a compiled model: load it with moe_mlir.load()")
    if options:
        raise TypeError("MLIR files take no import options, got "
                        + ", ".join(sorted(options)))
    return Module.from_file(path)
