"""A small glTF 2.0 document builder: one binary buffer, typed accessors (dense or sparse), GLB/glTF output.

Written with NumPy only so the exporter controls every byte (alignment, min/max, sparse storage);
``pygltflib`` and ``trimesh`` are used by the tests to read the result back, never to write it.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Optional

import numpy as np

# componentType codes from the glTF 2.0 spec.
FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
_COMPONENT = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UNSIGNED_BYTE, np.dtype(np.uint16): UNSIGNED_SHORT, np.dtype(np.uint32): UNSIGNED_INT}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


class GltfBuilder:
    """Accumulates JSON objects and one binary buffer; ``to_glb()`` / ``to_gltf()`` serialise it."""

    def __init__(self, generator: str = "avatar3d"):
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": generator}}
        self._chunks: list[bytes] = []
        self._size = 0

    # ------------------------------------------------------------------ generic helpers
    def add(self, kind: str, obj: dict) -> int:
        """Append ``obj`` to the top-level array ``kind`` ("nodes", "meshes", ...) and return its index."""
        arr = self.doc.setdefault(kind, [])
        arr.append(obj)
        return len(arr) - 1

    def _append_bytes(self, data: bytes) -> int:
        """Append raw bytes 4-byte aligned (enough for every component type we use); return the offset."""
        pad = (-self._size) % 4
        if pad:
            self._chunks.append(b"\0" * pad)
            self._size += pad
        off = self._size
        self._chunks.append(data)
        self._size += len(data)
        return off

    def buffer_view(self, data: bytes, target: Optional[int] = None, byte_stride: Optional[int] = None) -> int:
        """A bufferView over freshly appended bytes."""
        off = self._append_bytes(data)
        bv: dict[str, Any] = {"buffer": 0, "byteOffset": off, "byteLength": len(data)}
        if target is not None:
            bv["target"] = target
        if byte_stride is not None:
            bv["byteStride"] = byte_stride
        return self.add("bufferViews", bv)

    @staticmethod
    def _check(arr: np.ndarray) -> tuple[np.ndarray, int, str]:
        a = np.ascontiguousarray(arr)
        if a.dtype not in _COMPONENT:
            raise TypeError(f"glTF accessor data must be float32/uint8/uint16/uint32, got {a.dtype}")
        ncomp = 1 if a.ndim == 1 else int(np.prod(a.shape[1:]))
        return a, _COMPONENT[a.dtype], _TYPE[ncomp]

    def accessor(self, arr: np.ndarray, target: Optional[int] = None, minmax: bool = False, normalized: bool = False) -> int:
        """A dense accessor for (N,) or (N, C) data; ``minmax`` adds min/max (required for POSITION and anim input)."""
        a, comp, typ = self._check(arr)
        # glTF requires vertex attribute elements aligned to 4 bytes (tightly packed, no byteStride).
        if target == ARRAY_BUFFER and a.itemsize * (a.size // max(len(a), 1)) % 4:
            raise ValueError("vertex attribute rows must be a multiple of 4 bytes")
        acc: dict[str, Any] = {"bufferView": self.buffer_view(a.tobytes(), target), "componentType": comp, "count": int(len(a)), "type": typ}
        if normalized:
            acc["normalized"] = True
        if minmax and len(a):
            flat = a.reshape(len(a), -1)
            acc["min"] = [_num(x) for x in flat.min(0)]
            acc["max"] = [_num(x) for x in flat.max(0)]
        return self.add("accessors", acc)

    def sparse_or_dense(self, values: np.ndarray, eps: float, minmax: bool = True) -> tuple[int, int]:
        """Accessor for (N, 3) float32 deltas: sparse when that is smaller, zeroing |delta| <= ``eps``.

        Returns (accessor index, number of stored non-zero rows). Sparse storage costs 4 bytes of
        index + 12 of value per moving vertex versus 12 per vertex dense, so it wins below 3/4.
        """
        v = np.ascontiguousarray(values, np.float32)
        moving = np.flatnonzero(np.abs(v).max(1) > eps)
        if not len(moving):
            return self.zeros(len(v)), 0
        if len(moving) * 16 >= v.size * 4:
            return self.accessor(v, ARRAY_BUFFER, minmax=minmax), len(v)
        kept = np.zeros_like(v)
        kept[moving] = v[moving]
        acc: dict[str, Any] = {"componentType": FLOAT, "count": int(len(v)), "type": "VEC3"}
        if minmax:  # bounds of the accessor as read, zeros included
            acc["min"] = [_num(x) for x in kept.min(0)]
            acc["max"] = [_num(x) for x in kept.max(0)]
        idx_dtype = np.uint16 if len(v) < 65536 else np.uint32
        acc["sparse"] = {
            "count": int(len(moving)),
            "indices": {"bufferView": self.buffer_view(moving.astype(idx_dtype).tobytes()), "componentType": _COMPONENT[np.dtype(idx_dtype)]},
            "values": {"bufferView": self.buffer_view(v[moving].tobytes())},
        }
        return self.add("accessors", acc), len(moving)

    def zeros(self, count: int) -> int:
        """A (count, 3) float32 accessor of zeros, stored as one sparse zero entry (16 bytes).

        glTF allows an accessor without data (read as zeros), but importers built on assimp (Open3D, ...) reject it."""
        acc: dict[str, Any] = {"componentType": FLOAT, "count": int(count), "type": "VEC3", "min": [0.0] * 3, "max": [0.0] * 3,
                               "sparse": {"count": 1, "indices": {"bufferView": self.buffer_view(np.zeros(1, np.uint32).tobytes()),
                                                                  "componentType": UNSIGNED_INT},
                                          "values": {"bufferView": self.buffer_view(np.zeros(3, np.float32).tobytes())}}}
        return self.add("accessors", acc)

    def image(self, png: bytes, name: str, uri: Optional[str] = None) -> int:
        """An image stored in the buffer (GLB) or referenced by ``uri`` (external file beside .gltf)."""
        if uri is not None:
            return self.add("images", {"name": name, "uri": uri})
        return self.add("images", {"name": name, "mimeType": "image/png", "bufferView": self.buffer_view(png)})

    # ------------------------------------------------------------------ output
    def binary(self) -> bytes:
        data = b"".join(self._chunks)
        return data + b"\0" * ((-len(data)) % 4)

    def _json(self, buffer: dict) -> dict:
        doc = dict(self.doc)
        if self._size:
            doc["buffers"] = [buffer]
        return doc

    def to_glb(self) -> bytes:
        """The whole asset as one binary glTF (JSON chunk + BIN chunk, both 4-byte padded)."""
        binary = self.binary()
        js = json.dumps(self._json({"byteLength": len(binary)}), separators=(",", ":")).encode("utf-8")
        js += b" " * ((-len(js)) % 4)  # the JSON chunk is padded with spaces, the BIN chunk with zeros
        chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
        if self._size:
            chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
        return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks

    def to_gltf(self, bin_uri: Optional[str]) -> tuple[bytes, bytes]:
        """(JSON text, binary buffer) for a .gltf + .bin pair; ``bin_uri=None`` embeds the buffer as a data URI."""
        binary = self.binary()
        uri = bin_uri if bin_uri is not None else "data:application/octet-stream;base64," + base64.b64encode(binary).decode("ascii")
        js = json.dumps(self._json({"byteLength": len(binary), "uri": uri}), indent=1).encode("utf-8")
        return js, binary


def _num(x: Any) -> float | int:
    """JSON-friendly scalar: ints stay ints, float32 is widened exactly (so min/max match the data bit for bit)."""
    if isinstance(x, (np.integer, int)):
        return int(x)
    return float(x)
