"""Safe loading of research-model pickles (FLAME, SMPL family) without chumpy, on NumPy 2.

The official FLAME files are Python 2 pickles that hold ``chumpy.ch.Ch`` objects (and possibly
chumpy reordering/arithmetic nodes) next to NumPy arrays and a ``scipy.sparse`` matrix. chumpy does
not install on current Python/NumPy, and a plain ``pickle.load`` would execute whatever callable a
file names. :class:`RestrictedUnpickler` therefore

* resolves only an explicit allow-list of globals (NumPy array/dtype reconstruction, a few harmless
  builtins, scipy sparse matrices, chumpy classes); anything else -- ``os.system``, ``eval``,
  ``subprocess.Popen`` ... -- raises :class:`UnsafePickleError` before it can be called;
* maps chumpy classes to inert stand-ins (:class:`ChumpyNode`) that only record their pickled state;
  :func:`to_plain` then evaluates them to ``np.ndarray`` (``Ch.x``, reshapes, selections, sums ...);
* maps scipy sparse matrices to stand-ins rebuilt from ``data/indices/indptr/shape`` (so pickles from
  any scipy version load);
* decodes Python 2 ``str`` payloads as latin1 (how NumPy expects Python 2 array bytes).

Entry points: :func:`load_pickle` (path -> plain Python/NumPy/scipy objects) and
:func:`load_npy_object` (an ``.npy`` file holding a pickled dict, read without ``allow_pickle``).
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import numpy as np
import scipy.sparse as sp

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "ChumpyNode", "load_pickle", "loads", "to_plain", "load_npy_object"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it could run code)."""


# ----------------------------------------------------------------------------- stand-in classes
class ChumpyNode:
    """Inert stand-in for any allowed chumpy class; keeps the pickled ``__dict__`` in ``state``."""

    chumpy_class = "chumpy.ch.Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never called by the unpickler
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        # chumpy pickles its __dict__ (minus weak-ref caches); Python 2 may give a (dict, slots) pair.
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.chumpy_class}: expected a dict state, got {type(state).__name__}")
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.chumpy_class} stand-in>"


class SparseStandIn:
    """Inert stand-in for a pickled ``scipy.sparse`` csc/csr/coo matrix."""

    sparse_format = "csc"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"scipy.sparse {self.sparse_format}_matrix: expected a dict state")
        self.state = state

    def to_scipy(self) -> sp.spmatrix:
        st = self.state
        shape = st.get("_shape", st.get("shape"))
        if shape is None:
            raise ValueError(f"pickled scipy.sparse {self.sparse_format} matrix has no shape")
        shape = tuple(int(s) for s in shape)
        if self.sparse_format == "coo":
            row, col = st.get("row", st.get("coords", [None, None])[0]), st.get("col", st.get("coords", [None, None])[1])
            return sp.coo_matrix((np.asarray(st["data"]), (np.asarray(row), np.asarray(col))), shape=shape)
        cls = sp.csc_matrix if self.sparse_format == "csc" else sp.csr_matrix
        return cls((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape)


def _make_chumpy(module: str, name: str) -> type:
    return type(name, (ChumpyNode,), {"chumpy_class": f"{module}.{name}"})


def _make_sparse(fmt: str) -> type:
    return type(f"{fmt}_matrix", (SparseStandIn,), {"sparse_format": fmt})


# chumpy classes whose value we know how to compute (see _EVAL); others are refused at load time.
_CHUMPY_CLASSES = {
    "chumpy.ch": ("Ch",),
    "chumpy.reordering": ("Reshape", "Select", "transpose", "Concatenate", "Tile", "Repeat", "Diag", "DiagFlat", "rollaxis", "swapaxes", "Roll", "Rot90", "AtleastNd", "Sort"),
    "chumpy.ch_ops": ("add", "subtract", "multiply", "divide", "negative", "sum", "mean", "square", "sqrt", "exp", "log", "absolute", "dot"),
}
_SPARSE_FORMATS = ("csc", "csr", "coo")


# ----------------------------------------------------------------------------- safe callables
def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype not in (np.ndarray, np.matrix):
        raise UnsafePickleError(f"numpy _reconstruct of {subtype!r} refused (only ndarray is allowed)")
    return np.ndarray.__new__(subtype, shape, dtype)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    # NumPy's own helper for protocol-5 pickles; copy so the array owns writable memory.
    arr = np.frombuffer(buf, dtype=dtype)
    return (arr.reshape(shape, order=order) if shape else arr).copy()


def _np_scalar(dtype: np.dtype, data: Any = None) -> Any:
    if dtype.hasobject:
        return data
    if isinstance(data, str):  # Python 2 str loaded as latin1
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles of bytes with protocol < 3 use _codecs.encode(text, 'latin1'); only text codecs.
    if codecs.lookup(encoding).name not in ("iso8859-1", "latin-1", "utf-8", "ascii"):
        raise UnsafePickleError(f"_codecs.encode with codec {encoding!r} refused")
    return codecs.encode(obj, encoding, errors)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copy_reg._reconstructor restricted to our inert stand-ins (protocol 0/1 pickles)."""
    if isinstance(cls, type) and issubclass(cls, (ChumpyNode, SparseStandIn)) and base is object and state is None:
        return cls.__new__(cls)
    raise UnsafePickleError(f"copy_reg._reconstructor of {cls!r} refused")


_BUILTINS: dict[str, Any] = {
    "object": object, "set": set, "frozenset": frozenset, "list": list, "dict": dict, "tuple": tuple,
    "slice": slice, "complex": complex, "bytearray": bytearray, "int": int, "float": float, "bool": bool,
    "str": str, "bytes": bytes, "long": int, "unicode": str,
}

_NUMPY: dict[str, Any] = {
    "_reconstruct": _np_reconstruct, "scalar": _np_scalar, "_frombuffer": _np_frombuffer,
    "ndarray": np.ndarray, "dtype": np.dtype, "matrix": np.matrix,
}


def _resolve(module: str, name: str, standins: dict[str, type]) -> Any:
    """The object a pickle global ``module.name`` stands for, or raise :class:`UnsafePickleError`.

    ``standins`` caches this load's stand-in classes: fresh per unpickler, so a hostile file that
    rewrites a class attribute (pickle BUILD on a class) cannot affect any other load.
    """
    if module in ("builtins", "__builtin__") and name in _BUILTINS:
        return _BUILTINS[name]
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return _reconstructor
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric", "numpy.matrixlib.defmatrix"):
        if name in _NUMPY:
            return _NUMPY[name]
    if module == "numpy" and name in ("float64", "float32", "int64", "int32", "uint32", "uint8", "bool_"):
        return np.dtype(name)  # only used as dtype arguments
    if module.startswith("scipy.sparse"):
        for fmt in _SPARSE_FORMATS:
            if name in (f"{fmt}_matrix", f"{fmt}_array"):
                if fmt not in standins:
                    standins[fmt] = _make_sparse(fmt)
                return standins[fmt]
    if module.startswith("chumpy") or module in ("ch", "reordering", "ch_ops"):
        # Python 2 chumpy also appears with a flat layout (``ch.Ch``): accept both spellings.
        mod = module if module.startswith("chumpy") else f"chumpy.{module}"
        if name not in _CHUMPY_CLASSES.get(mod, ()):
            raise UnsafePickleError(f"unsupported chumpy class {module}.{name} (only Ch, reordering and basic arithmetic nodes can be converted)")
        key = f"{mod}.{name}"
        if key not in standins:
            standins[key] = _make_chumpy(mod, name)
        return standins[key]
    raise UnsafePickleError(f"refusing global {module}.{name}: a model file never needs it (the pickle may be malicious)")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only through an allow-list (see module docstring)."""

    def __init__(self, file: BinaryIO) -> None:
        # latin1: Python 2 byte strings (NumPy buffers) survive unchanged.
        super().__init__(file, encoding="latin1", fix_imports=False)
        self._standins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        return _resolve(module, name, self._standins)


# ----------------------------------------------------------------------------- evaluation to numpy
def _arr(x: Any) -> Any:
    x = to_plain(x)
    return np.asarray(x) if not sp.issparse(x) else x


def _eval_reorder(name: str, s: dict) -> np.ndarray:
    a = _arr(s["a"])
    if name == "Reshape":
        return a.reshape(s["newshape"])
    if name == "Select":
        r = a.ravel()[np.asarray(s["idxs"]).ravel()]
        return r.reshape(s["preferred_shape"]) if "preferred_shape" in s else r
    if name == "transpose":
        return np.ascontiguousarray(np.transpose(a, s.get("axes")))
    if name == "Tile":
        return np.tile(a, s["reps"])
    if name == "Repeat":
        return np.repeat(a, s["repeats"], s.get("axis"))
    if name == "Diag":
        return np.diag(a, s.get("k", 0))
    if name == "DiagFlat":
        return np.diagflat(a, s.get("k", 0))
    if name == "rollaxis":
        return np.rollaxis(a, s["axis"], s.get("start", 0))
    if name == "swapaxes":
        return np.swapaxes(a, s["axis1"], s["axis2"])
    if name == "Roll":
        return np.roll(a, s["shift"], s.get("axis"))
    if name == "Rot90":
        return np.rot90(a, s.get("k", 1))
    if name == "Sort":
        return np.sort(a, s.get("axis", -1))
    raise ValueError(f"cannot evaluate chumpy.reordering.{name}")


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "negative": np.negative, "square": np.square, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "absolute": np.abs,
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
}


def _eval_chumpy(node: ChumpyNode) -> np.ndarray:
    mod, _, name = node.chumpy_class.rpartition(".")
    s = node.state
    try:
        if name == "Ch":
            return np.asarray(to_plain(s["x"]), dtype=np.float64)
        if name == "AtleastNd":
            x = _arr(s["x"])
            return {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[int(s["ndims"])](x)
        if mod == "chumpy.reordering" and name == "Concatenate":
            terms = s.get("dterms") or sorted((k for k in s if k.startswith("m") and k[1:].isdigit()), key=lambda k: int(k[1:]))
            return np.concatenate([_arr(s[t]) for t in terms], axis=s.get("axis", 0))
        if mod == "chumpy.reordering":
            return _eval_reorder(name, s)
        if name in _UNARY:
            return _UNARY[name](_arr(s["x"]))
        if name in _BINARY:
            return np.asarray(_BINARY[name](_arr(s["x1"]), _arr(s["x2"])))
        if name in ("sum", "mean"):
            return np.asarray(getattr(np, name)(_arr(s["x"]), axis=s.get("axis")))
        if name == "dot":
            return np.asarray(_arr(s["a"]) @ _arr(s["b"]))
    except KeyError as e:
        raise ValueError(f"pickled {node.chumpy_class} lacks its {e.args[0]!r} term") from None
    raise ValueError(f"cannot evaluate {node.chumpy_class}")


def to_plain(obj: Any) -> Any:
    """Replace chumpy stand-ins by ``np.ndarray`` and sparse stand-ins by scipy matrices, recursively."""
    if isinstance(obj, ChumpyNode):
        return _eval_chumpy(obj)
    if isinstance(obj, SparseStandIn):
        return obj.to_scipy()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        out = np.empty(obj.shape, dtype=object)
        for i, v in enumerate(obj.ravel()):
            out.reshape(-1)[i] = to_plain(v)
        return out
    return obj


def loads(data: bytes) -> Any:
    """Unpickle ``data`` through the allow-list and convert chumpy/sparse stand-ins (see :func:`to_plain`)."""
    return to_plain(RestrictedUnpickler(io.BytesIO(data)).load())


def load_pickle(path: Union[str, Path]) -> Any:
    """Load a (Python 2 or 3) model pickle safely; returns plain dict/NumPy/scipy objects.

    Raises:
        UnsafePickleError: the file names a callable outside the allow-list.
        pickle.UnpicklingError, EOFError, ValueError: the file is truncated or not a pickle.
    """
    with open(path, "rb") as fh:
        return to_plain(RestrictedUnpickler(fh).load())


def load_npy_object(path: Union[str, Path]) -> Any:
    """Read an ``.npy`` file; object arrays (pickled dicts like FLAME's landmark embeddings) go
    through :class:`RestrictedUnpickler` instead of ``np.load(allow_pickle=True)``.

    Returns the array, or for a 0-d object array its single item (usually a dict).
    """
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        if not dtype.hasobject:
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        arr = to_plain(RestrictedUnpickler(fh).load())
    arr = np.asarray(arr, dtype=object) if not isinstance(arr, np.ndarray) else arr
    return arr[()] if arr.ndim == 0 else arr
