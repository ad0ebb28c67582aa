"""Type stubs of the moe_mlir package (the names of moe_mlir._core and
import_model)."""

from typing import Any

from ._core import __version__ as __version__
from ._core import (
    CompiledModel as CompiledModel,
    Error as Error,
    InvalidArgumentError as InvalidArgumentError,
    LanguageModel as LanguageModel,
    Module as Module,
    TensorSpec as TensorSpec,
    UnsupportedError as UnsupportedError,
    _Path,
    import_hf as import_hf,
    import_onnx as import_onnx,
    load as load,
    num_threads as num_threads,
    parse as parse,
    set_num_threads as set_num_threads,
)

__all__: list[str]

def import_model(path: _Path, **options: Any) -> Module:
    """A directory as a Hugging Face checkpoint, *.onnx as ONNX, anything
    else as MLIR (what moe-compile does with its input)."""
