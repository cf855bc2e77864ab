"""Read and write linear HDR images: Radiance ``.hdr`` (RGBE, through OpenCV) and OpenEXR ``.exr``.

OpenCV's wheels are built without OpenEXR, so ``.exr`` is read and written here: single-part
scanline files with half, float or uint channels, uncompressed or zlib-compressed (``NONE``,
``ZIPS``, ``ZIP``: what most tools write by default). Tiled, deep and multi-part files and the
other compressions (PIZ, PXR24, B44, DWA) are refused with a sentence saying so.

Images are (H, W, 3) float32 linear RGB, row 0 at the top.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import BadInputError

__all__ = ["read_hdr_image", "write_hdr_image"]

PathLike = Union[str, Path]

_EXR_MAGIC = 20000630
_EXR_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}  # UINT, HALF, FLOAT
_EXR_COMPRESSIONS = {0: ("NONE", 1), 2: ("ZIPS", 1), 3: ("ZIP", 16)}  # id -> (name, scanlines per chunk)
_EXR_OTHER = {1: "RLE", 4: "PIZ", 5: "PXR24", 6: "B44", 7: "B44A", 8: "DWAA", 9: "DWAB"}


def read_hdr_image(path: PathLike) -> np.ndarray:
    """(H, W, 3) float32 linear RGB from a ``.hdr`` or ``.exr`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".exr":
        return _read_exr(path)
    if suffix == ".hdr":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BadInputError(f"{path}: not a readable Radiance .hdr image")
        return np.ascontiguousarray(img[..., ::-1], np.float32)  # OpenCV is BGR
    raise BadInputError(f"{path}: HDR images must be .hdr or .exr files")


def write_hdr_image(path: PathLike, rgb: np.ndarray) -> None:
    """Write (H, W, 3) linear RGB as ``.hdr`` (RGBE: 8-bit mantissas) or ``.exr`` (float32, ZIP)."""
    path = Path(path)
    rgb = np.asarray(rgb, np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    suffix = path.suffix.lower()
    if suffix == ".exr":
        path.write_bytes(_exr_bytes(rgb))
    elif suffix == ".hdr":
        import cv2

        if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"{path}: could not write the .hdr image")
    else:
        raise BadInputError(f"{path}: HDR images must be .hdr or .exr files")


# ----------------------------------------------------------------------------- OpenEXR
def _attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _zip_pack(raw: bytes) -> bytes:
    """OpenEXR's ZIP filter: split even/odd bytes, delta-code them, zlib."""
    b = np.frombuffer(raw, np.uint8)
    t = np.concatenate([b[0::2], b[1::2]]).astype(np.int16)
    d = t.copy()
    d[1:] = (t[1:] - t[:-1] + 128 + 256) % 256
    return zlib.compress(d.astype(np.uint8).tobytes())


def _zip_unpack(data: bytes, size: int) -> bytes:
    t = np.frombuffer(zlib.decompress(data), np.uint8)
    if len(t) != size:
        raise BadInputError(f"EXR chunk decompressed to {len(t)} bytes, expected {size}")
    t = np.cumsum(t.astype(np.int64) - 128, dtype=np.int64)  # undo the delta coding (mod 256 below)
    t = ((t + 128) % 256).astype(np.uint8)  # the first byte is stored as is
    out = np.empty(size, np.uint8)
    half = (size + 1) // 2
    out[0::2], out[1::2] = t[:half], t[half:]
    return out.tobytes()


def _exr_bytes(rgb: np.ndarray) -> bytes:
    """A single-part scanline OpenEXR file: float32 B, G, R channels, ZIP compression."""
    H, W = rgb.shape[:2]
    chlist = b"".join(c + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for c in (b"B", b"G", b"R")) + b"\0"
    box = struct.pack("<4i", 0, 0, W - 1, H - 1)
    header = b"".join([
        struct.pack("<ii", _EXR_MAGIC, 2),
        _attr("channels", "chlist", chlist), _attr("compression", "compression", b"\x03"),
        _attr("dataWindow", "box2i", box), _attr("displayWindow", "box2i", box),
        _attr("lineOrder", "lineOrder", b"\0"), _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0)), _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    lines = _EXR_COMPRESSIONS[3][1]
    planar = np.ascontiguousarray(rgb[..., ::-1].transpose(0, 2, 1), "<f4")  # (H, BGR, W): per line, channel by channel
    chunks = []
    for y0 in range(0, H, lines):
        raw = planar[y0:y0 + lines].tobytes()
        packed = _zip_pack(raw)
        data = packed if len(packed) < len(raw) else raw  # the format stores incompressible chunks raw
        chunks.append(struct.pack("<ii", y0, len(data)) + data)
    offsets, pos = [], len(header) + 8 * len(chunks)
    for c in chunks:
        offsets.append(pos)
        pos += len(c)
    return header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(chunks)


def _read_exr_header(buf: bytes, path: Path) -> tuple[dict, int]:
    magic, version = struct.unpack_from("<ii", buf, 0)
    if magic != _EXR_MAGIC:
        raise BadInputError(f"{path}: not an OpenEXR file")
    if version & 0x1A00:  # tiled (0x200), deep (0x800) or multi-part (0x1000); long names (0x400) are fine
        raise BadInputError(f"{path}: tiled, deep or multi-part OpenEXR files are not supported (scanline images are)")
    attrs, pos = {}, 8
    while buf[pos] != 0:
        end = buf.index(b"\0", pos)
        name = buf[pos:end].decode()
        tend = buf.index(b"\0", end + 1)
        size = struct.unpack_from("<i", buf, tend + 1)[0]
        attrs[name] = buf[tend + 5:tend + 5 + size]
        pos = tend + 5 + size
    return attrs, pos + 1


def _exr_channels(chlist: bytes) -> list[tuple[str, np.dtype]]:
    out, pos = [], 0
    while chlist[pos] != 0:
        end = chlist.index(b"\0", pos)
        ptype, _, xs, ys = struct.unpack_from("<iB3xii", chlist, end + 1)
        out.append((chlist[pos:end].decode(), _EXR_TYPES[ptype]))
        pos = end + 17
    return out


def _read_exr(path: Path) -> np.ndarray:
    buf = path.read_bytes()
    attrs, pos = _read_exr_header(buf, path)
    comp = attrs["compression"][0]
    if comp not in _EXR_COMPRESSIONS:
        raise BadInputError(f"{path}: OpenEXR compression {_EXR_OTHER.get(comp, comp)} is not supported "
                            f"(NONE, ZIPS and ZIP are; re-save the file with one of them)")
    channels = _exr_channels(attrs["channels"])
    x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
    W, H = x1 - x0 + 1, y1 - y0 + 1
    lines = _EXR_COMPRESSIONS[comp][1]
    n_chunks = (H + lines - 1) // lines
    offsets = struct.unpack_from(f"<{n_chunks}Q", buf, pos)
    planes = {name: np.empty((H, W), np.float32) for name, _ in channels}
    row_bytes = sum(dt.itemsize for _, dt in channels) * W
    for off in offsets:
        y, size = struct.unpack_from("<ii", buf, off)
        n = min(lines, y1 - y + 1)
        data = buf[off + 8:off + 8 + size]
        raw = data if size == n * row_bytes else _zip_unpack(data, n * row_bytes)
        p = 0
        for r in range(n):
            for name, dt in channels:
                planes[name][y - y0 + r] = np.frombuffer(raw, dt, W, p)
                p += W * dt.itemsize
    if all(c in planes for c in "RGB"):
        return np.stack([planes["R"], planes["G"], planes["B"]], -1)
    if "Y" in planes:  # luminance-only images
        return np.repeat(planes["Y"][..., None], 3, -1)
    raise BadInputError(f"{path}: OpenEXR image without R, G, B (or Y) channels: {', '.join(planes)}")
