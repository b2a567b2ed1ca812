"""Reader for the IDX format of MNIST-style files (big-endian header, then raw data), gzipped or not."""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

__all__ = ["read_bytes", "parse_idx", "read_idx"]

# third magic byte -> element type (all big-endian)
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path):
    """Return the file's content, decompressed when it is gzip (detected from its first bytes)."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({error}); download it again") from None


def parse_idx(content, name="IDX data"):
    """Parse IDX bytes: magic ``0x0000 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, then the data."""
    if len(content) < 4:
        raise ValueError(f"{name}: only {len(content)} bytes, too short for an IDX header (needs at least 4)")
    magic = int.from_bytes(content[:4], "big")
    type_code, ndim = content[2], content[3]
    if content[0] != 0 or content[1] != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise ValueError(f"{name}: bad magic number 0x{magic:08X}: not an IDX file (MNIST images have "
                         "0x00000803 = 2051, labels 0x00000801 = 2049)")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise ValueError(f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, "
                         f"the file has {len(content)}")
    shape = tuple(int.from_bytes(content[4 + 4 * axis:8 + 4 * axis], "big") for axis in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "longer than its header says"
        dims = " x ".join(str(size) for size in shape)
        raise ValueError(f"{name}: file is {problem}: header says {dims} elements of {dtype.name}, so "
                         f"{expected} bytes are expected, but it has {len(content)} bytes")
    data = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def read_idx(path):
    """Read an IDX file (``.gz`` or raw) into a native-endian array."""
    return parse_idx(read_bytes(path), os.fspath(path))
