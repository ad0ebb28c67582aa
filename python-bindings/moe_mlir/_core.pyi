"""Type stubs of moe_mlir._core, the pybind11 layer over moe-mlir's C API
(include/moe-mlir-c/MoEMlir.h). Use the moe_mlir package; see
docs/python.md."""

import os
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

_Path = Union[str, os.PathLike[str]]
_Paths = Union[_Path, Iterable[_Path], None]
_Tokens = Union[Sequence[int], npt.NDArray[np.integer[Any]]]

__version__: str  # moe-mlir's version (CMake's PROJECT_VERSION)

class Error(RuntimeError):
    """A failure moe-mlir's tools report, with their one-line message: a
    missing or malformed file, an import, parse, pipeline or compile error,
    a weight that cannot be bound."""

class InvalidArgumentError(Error, ValueError):
    """The caller's mistake: an input of the wrong shape or dtype, a token
    outside the vocabulary, an option out of range, an unknown pass."""

class UnsupportedError(Error, NotImplementedError):
    """A request moe-mlir refuses because it cannot do it: target 'cuda'
    (there is no GPU code generation; compile for 'cpu')."""

class TensorSpec:
    """A model input or output as the model declares it."""
    @property
    def name(self) -> str:
        """The name inputs are bound by."""
    @property
    def dtype(self) -> Literal["f32", "f16", "bf16", "i32", "i64", "u8", "bool"]:
        """The element type, as the model's metadata names it."""
    @property
    def shape(self) -> Tuple[Optional[int], ...]:
        """The sizes; None for a size chosen at run time."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class LanguageModel:
    """A session over a compiled language model (input_ids and caches in,
    logits and the grown caches out, as the Hugging Face importer writes
    it): its weights bound, its caches kept between calls."""
    @property
    def vocab_size(self) -> int:
        """V, the number of logits per token."""
    @property
    def cached_tokens(self) -> int:
        """Tokens in the caches: the position of the next token."""
    @property
    def last_stats(self) -> Optional[Dict[str, float]]:
        """Timings of the last generate(): prefill_ms, decode_ms,
        decode_steps."""
    def reset(self) -> None:
        """Forgets every cached token."""
    def forward(self, tokens: _Tokens) -> npt.NDArray[np.float32]:
        """Runs the tokens at the next positions; their logits, float32
        [len(tokens), V]."""
    @overload
    def generate(self, tokens: _Tokens, n: int, *,
                 return_logits: Literal[False] = ...) -> npt.NDArray[np.int64]: ...
    @overload
    def generate(self, tokens: _Tokens, n: int, *, return_logits: Literal[True]
                 ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...

class CompiledModel:
    """A model compiled to a shared library (Module.compile) or loaded from
    one (load). model(x, y=...) runs it: {output name: array}."""
    @property
    def entry(self) -> str:
        """The entry function's name."""
    @property
    def inputs(self) -> List[TensorSpec]:
        """The inputs, in order."""
    @property
    def outputs(self) -> List[TensorSpec]:
        """The outputs, in order."""
    @property
    def checkpoint(self) -> Optional[str]:
        """The checkpoint the model records (where inputs not given are
        bound from), or None."""
    @property
    def metadata(self) -> str:
        """The model's metadata record (moe_model_metadata())."""
    def has_weight(self, name: str) -> bool:
        """True when the weights hold a tensor for input `name`."""
    def add_weights(self, paths: _Paths) -> None:
        """Binds inputs from these checkpoints instead of the recorded one
        (moe-run --weights)."""
    def __call__(self, *inputs: npt.ArrayLike, **named: npt.ArrayLike) -> Dict[str, np.ndarray]:
        """Runs the model once: positional arguments are the first inputs in
        order, keywords inputs by name; inputs left out are bound from the
        weights. C-contiguous arrays of the model's dtype are passed without
        a copy. Returns {output name: array} in output order."""
    def run(self, inputs: Union[Mapping[str, npt.ArrayLike], Sequence[npt.ArrayLike]]
            ) -> Dict[str, np.ndarray]:
        """The same as calling the model, with a mapping or a sequence."""
    def save(self, path: _Path) -> None:
        """Writes the shared library (moe-run and load() take it)."""
    def write_header(self, path: _Path) -> None:
        """Writes the C header moe-compile --header writes."""
    def language_model(self) -> LanguageModel:
        """A new session with its own caches."""
    def logits(self, tokens: _Tokens) -> npt.NDArray[np.float32]:
        """A language model's logits for a prompt, float32
        [len(tokens), V] (moe-run --tokens ... --logits-out)."""
    @overload
    def generate(self, tokens: _Tokens, n: int, *,
                 return_logits: Literal[False] = ...) -> npt.NDArray[np.int64]: ...
    @overload
    def generate(self, tokens: _Tokens, n: int, *, return_logits: Literal[True]
                 ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...

class Module:
    """An MLIR module: imported or parsed. str() gives its text."""
    @staticmethod
    def parse(text: str, source_name: str = "<string>") -> Module:
        """Parses MLIR text."""
    @staticmethod
    def from_file(path: _Path) -> Module:
        """Parses an MLIR file."""
    @property
    def origin(self) -> str:
        """The file or directory it came from."""
    @property
    def checkpoint(self) -> Optional[str]:
        """The checkpoint the importer recorded, or None."""
    def run_pipeline(self, pipeline: str) -> Module:
        """Runs a moe-opt pass pipeline in place; returns the module."""
    def verify(self) -> None:
        """Raises Error when the module does not verify."""
    def clone(self) -> Module:
        """A deep copy."""
    def compile(self, *, target: Literal["cpu", "cuda"] = "cpu", ep: int = 1,
                cpu: str = "native", entry: Optional[str] = None,
                weights: _Paths = None,
                bf16_dot: Literal["auto", "on", "off"] = "auto",
                optimize: str = "") -> CompiledModel:
        """Compiles ahead of time (moe-compile) and loads the library; the
        module is left unchanged. target='cuda' raises UnsupportedError;
        ep=N shards the experts over N ranks (save() it, run it with
        moe-run --ep N). bf16_dot: with bf16 weights, AVX512-BF16 dot
        products on bf16-rounded activations ('auto': where the CPU has
        avx512bf16; 'off': exact f32 products). optimize: moe-optimize's
        options as moe-opt takes them ('fuse-shared-expert=false
        weight-absorption=naive'), '' for the defaults, 'off' to skip it."""

def import_hf(directory: _Path, *, shape_only: bool = False) -> Module:
    """Imports a Hugging Face checkpoint directory (moe-import DIR)."""

def import_onnx(path: _Path, *, raise_moe: bool = True) -> Module:
    """Imports an ONNX file (moe-import FILE.onnx)."""

def parse(text: str, source_name: str = "<string>") -> Module:
    """Parses MLIR text."""

def load(path: _Path, *, weights: _Paths = None) -> CompiledModel:
    """Loads a library written by moe-compile or CompiledModel.save."""

def set_num_threads(n: int) -> None:
    """Threads of the pool compiled models run on (moe-run --num-threads)."""

def num_threads() -> int:
    """The threads of the pool."""

def _model_kind(path: _Path) -> Literal["hf", "onnx", "library", "mlir"]: ...
