"""Read (and write) TensorFlow V2 checkpoints without TensorFlow.

A TF1 ``Saver`` / TF2 checkpoint in the V2 "tensor bundle" format is two files per prefix:

* ``PREFIX.index``: a LevelDB-style SSTable. Its keys are tensor names; the empty key holds a
  ``BundleHeaderProto`` (shard count, endianness) and every other key a ``BundleEntryProto``
  (dtype, shape, shard id, byte offset, byte size, masked CRC32C of the bytes).
* ``PREFIX.data-SSSSS-of-NNNNN``: the raw little-endian tensor bytes, concatenated.

This module decodes both with the standard library and NumPy only: the SSTable blocks, the two small
protobuf messages, and the CRC32C checksums (vectorised with NumPy, so a 190 MB checkpoint verifies in
a few seconds). It also writes the same format (:func:`write_tf_checkpoint`), which the tests use to
build full-size checkpoints; ``tests/fixtures/make_tf_fixtures.py`` checks with TensorFlow itself that
TensorFlow reads what this writer writes, and that this reader reads what TensorFlow's ``Saver`` writes.

Only numeric dtypes are supported; string tensors and partitioned (sliced) variables raise
:class:`TFCheckpointError` when read. The module deliberately imports neither torch nor the rest of
the package, so the fixture script can load it by path inside a TensorFlow-only environment (which is
also why it keeps its own small streamed temp-file-and-rename writer instead of ``bokeh_model.files``).

Why one file: it is one story, the tensor-bundle format read and written symmetrically (CRC32C, varint
protobuf fields, SSTable blocks); the fixture script loads this single file by path, without the package.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "TFCheckpointError",
    "TFCheckpointReader",
    "TensorEntry",
    "crc32c",
    "mask_crc",
    "read_tf_checkpoint",
    "unmask_crc",
    "write_tf_checkpoint",
]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5
_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto -> NumPy (little-endian).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_DTYPE_NAMES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}
_NUMPY_TO_TF = {dtype: code for code, dtype in _DTYPES.items()}


class TFCheckpointError(ValueError):
    """The checkpoint is missing, truncated, corrupt, or uses a feature this reader does not support."""


# ----------------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as used by LevelDB tables and TF bundles.


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table[byte] = crc
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _crc_update_python(register: int, data: bytes | memoryview) -> int:
    table = _TABLE_LIST
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _gf2_apply(matrix: list[int], vector: int) -> int:
    result = 0
    index = 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_apply(matrix, column) for column in matrix]


def _zeros_operator(length: int) -> list[list[int]]:
    """Feeding ``length`` zero bytes is a linear map on the CRC register; returned as four 256-entry
    tables (one per register byte) so that applying it costs four lookups."""
    one_byte = [_crc_update_python(1 << bit, b"\0") for bit in range(32)]
    matrix = [1 << bit for bit in range(32)]  # identity, as 32 columns over GF(2)
    power = one_byte
    while length:
        if length & 1:
            matrix = [_gf2_apply(power, column) for column in matrix]
        length >>= 1
        if length:
            power = _gf2_square(power)
    return [[_gf2_apply(matrix, value << (8 * k)) for value in range(256)] for k in range(4)]


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC32C of ``data`` (bytes-like or an array's raw bytes).

    Short inputs use a table loop; long ones split into about sqrt(size) equal chunks whose CRC registers
    are computed side by side with NumPy and then combined (the CRC register update is linear over GF(2)).
    """
    buffer = np.frombuffer(
        memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8
    )
    size = buffer.size
    if size < 1 << 15:
        return _crc_update_python(0xFFFFFFFF, buffer.tobytes()) ^ 0xFFFFFFFF
    chunks = 1 << max(8, (size.bit_length() - 1) // 2)  # ~sqrt(size): balances the two loops below
    length = size // chunks
    columns = np.asfortranarray(buffer[: chunks * length].reshape(chunks, length))
    registers = np.zeros(chunks, dtype=np.uint32)
    for j in range(length):
        registers = _TABLE[(registers ^ columns[:, j]) & 0xFF] ^ (registers >> 8)
    t0, t1, t2, t3 = _zeros_operator(length)
    register = 0xFFFFFFFF
    for value in registers.tolist():
        register = t0[register & 0xFF] ^ t1[(register >> 8) & 0xFF] ^ t2[(register >> 16) & 0xFF] ^ t3[register >> 24]
        register ^= value
    register = _crc_update_python(register, buffer[chunks * length :].tobytes())
    return register ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TF masking of a stored CRC (so that CRCs of CRCs are not trivially related)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------------
# Varints and the two protobuf messages.


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise TFCheckpointError("truncated varint in checkpoint index")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError("varint longer than 64 bits in checkpoint index")


def _varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _parse_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for a serialized protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", data, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", data, pos)[0]
            pos += 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire} in checkpoint index")
        yield field, wire, value


def _parse_shape(data: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _, value in _parse_fields(data):
        if field == 2:  # TensorShapeProto.dim
            size = 0
            for dim_field, _, dim_value in _parse_fields(value):  # type: ignore[arg-type]
                if dim_field == 1:
                    size = int(dim_value)  # type: ignore[arg-type]
                    if size >= 1 << 63:
                        size -= 1 << 64
            dims.append(size)
        elif field == 3 and value:
            raise TFCheckpointError("tensor of unknown rank in checkpoint")
    return tuple(dims)


@dataclass(frozen=True)
class TensorEntry:
    """One ``BundleEntryProto``: where a tensor's bytes live and what they are."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool = False

    @property
    def dtype(self) -> str:
        """TensorFlow dtype name, e.g. ``float32``."""
        return _DTYPE_NAMES.get(self.dtype_code, f"dtype#{self.dtype_code}")


def _parse_entry(name: str, data: bytes) -> TensorEntry:
    fields: dict[str, object] = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0, "crc": None}
    sliced = False
    for field, _, value in _parse_fields(data):
        if field == 1:
            fields["dtype"] = value
        elif field == 2:
            fields["shape"] = _parse_shape(value)  # type: ignore[arg-type]
        elif field == 3:
            fields["shard"] = value
        elif field == 4:
            fields["offset"] = value
        elif field == 5:
            fields["size"] = value
        elif field == 6:
            fields["crc"] = value
        elif field == 7:
            sliced = True
    return TensorEntry(
        name,
        int(fields["dtype"]),
        tuple(fields["shape"]),
        int(fields["shard"]),  # type: ignore[arg-type]
        int(fields["offset"]),
        int(fields["size"]),
        fields["crc"],
        sliced,
    )  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# SSTable reading.


def _read_block(file_bytes: bytes, offset: int, size: int, path: Path, verify: bool) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(file_bytes):
        raise TFCheckpointError(f"{path}: block at {offset} (+{size} bytes) runs past the end of the file")
    contents = file_bytes[offset:end]
    compression = file_bytes[end]
    if verify:
        stored = struct.unpack_from("<I", file_bytes, end + 1)[0]
        actual = mask_crc(_crc_update_python(0xFFFFFFFF, contents + bytes([compression])) ^ 0xFFFFFFFF)
        if stored != actual:
            raise TFCheckpointError(f"{path}: block checksum mismatch at offset {offset} (file corrupt?)")
    if compression != 0:
        raise TFCheckpointError(
            f"{path}: block at {offset} uses compression type {compression}; only uncompressed tables "
            "(what TensorFlow's BundleWriter writes) are supported"
        )
    return contents


def _iter_block(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TFCheckpointError(f"{path}: block too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TFCheckpointError(f"{path}: bad restart count {num_restarts}")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _read_varint(block, pos)
        non_shared, pos = _read_varint(block, pos)
        value_length, pos = _read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > limit:
            raise TFCheckpointError(f"{path}: corrupt block entry")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_length]
        pos += value_length


def _parse_handle(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _read_varint(data, pos)
    size, pos = _read_varint(data, pos)
    return offset, size, pos


def _read_table(path: Path, verify: bool) -> dict[bytes, bytes]:
    try:
        file_bytes = path.read_bytes()
    except FileNotFoundError:
        raise TFCheckpointError(f"checkpoint index not found: {path}") from None
    if len(file_bytes) < _FOOTER_SIZE:
        raise TFCheckpointError(f"{path}: too short to be a checkpoint index ({len(file_bytes)} bytes)")
    footer = file_bytes[-_FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, 40)[0]
    if magic != _TABLE_MAGIC:
        raise TFCheckpointError(f"{path}: not a TensorFlow V2 checkpoint index (bad table magic {magic:#x})")
    _, _, pos = _parse_handle(footer)  # metaindex: unused (no filters in TF bundles)
    index_offset, index_size, _ = _parse_handle(footer, pos)
    index_block = _read_block(file_bytes, index_offset, index_size, path, verify)
    entries: dict[bytes, bytes] = {}
    for _, handle in _iter_block(index_block, path):
        offset, size, _ = _parse_handle(handle)
        for key, value in _iter_block(_read_block(file_bytes, offset, size, path, verify), path):
            entries[key] = value
    return entries


def _prefix_of(path: str | os.PathLike) -> Path:
    prefix = Path(path)
    name = prefix.name
    if name.endswith(".index"):
        return prefix.with_name(name[: -len(".index")])
    if ".data-" in name:
        return prefix.with_name(name.split(".data-")[0])
    return prefix


class TFCheckpointReader:
    """Random access to the tensors of a TF V2 checkpoint.

    Args:
        prefix: the checkpoint prefix (``model.ckpt``), or its ``.index`` / ``.data-*`` file.
        verify_checksums: check block and tensor CRC32Cs (cheap; leave on).

    >>> reader = TFCheckpointReader("models/original/pynet_bokeh_level_0")  # doctest: +SKIP
    >>> reader.shapes()["generator/Variable"]  # doctest: +SKIP
    (3, 3, 16, 32)
    """

    def __init__(self, prefix: str | os.PathLike, *, verify_checksums: bool = True) -> None:
        self.prefix = _prefix_of(prefix)
        self.verify_checksums = verify_checksums
        index_path = Path(f"{self.prefix}.index")
        if not index_path.is_file():
            raise TFCheckpointError(
                f"checkpoint index not found: {index_path} (give the prefix, e.g. models/original/pynet_bokeh_level_0)"
            )
        raw = _read_table(index_path, verify_checksums)
        header = raw.pop(b"", None)
        if header is None:
            raise TFCheckpointError(f"{index_path}: no bundle header (is this a V1 checkpoint?)")
        self.num_shards = 1
        for field, _, value in _parse_fields(header):
            if field == 1:
                self.num_shards = int(value)  # type: ignore[arg-type]
            elif field == 2 and value != 0:
                raise TFCheckpointError(f"{index_path}: big-endian checkpoints are not supported")
        self.entries: dict[str, TensorEntry] = {}
        for key, value in raw.items():
            name = key.decode("utf-8")
            self.entries[name] = _parse_entry(name, value)

    def _data_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def keys(self) -> list[str]:
        """Tensor names, sorted as stored."""
        return sorted(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` for every tensor."""
        return {name: entry.shape for name, entry in sorted(self.entries.items())}

    def read(self, name: str) -> np.ndarray:
        """Read one tensor as a NumPy array (its own copy, native byte order).

        Raises:
            TFCheckpointError: unknown name, unsupported dtype, truncated data, checksum mismatch.
        """
        entry = self.entries.get(name)
        if entry is None:
            raise TFCheckpointError(f"no tensor named {name!r} in {self.prefix} (it has {len(self.entries)} tensors)")
        if entry.sliced:
            raise TFCheckpointError(f"tensor {name!r} is partitioned (sliced); not supported")
        dtype = _DTYPES.get(entry.dtype_code)
        if dtype is None:
            raise TFCheckpointError(
                f"tensor {name!r} has dtype {entry.dtype}; supported: {sorted(_DTYPE_NAMES[c] for c in _DTYPES)}"
            )
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if expected != entry.size:
            raise TFCheckpointError(
                f"tensor {name!r}: {entry.size} bytes stored, {expected} expected for {entry.dtype}{list(entry.shape)}"
            )
        path = self._data_path(entry.shard_id)
        try:
            with open(path, "rb") as handle:
                handle.seek(entry.offset)
                data = handle.read(entry.size)
        except FileNotFoundError:
            raise TFCheckpointError(f"checkpoint data file not found: {path}") from None
        if len(data) != entry.size:
            raise TFCheckpointError(
                f"{path}: truncated; tensor {name!r} needs bytes {entry.offset}..{entry.offset + entry.size}"
            )
        if self.verify_checksums and entry.crc32c is not None and mask_crc(crc32c(data)) != entry.crc32c:
            raise TFCheckpointError(f"tensor {name!r}: checksum mismatch in {path} (file corrupt?)")
        return np.frombuffer(data, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=True)

    def read_all(self) -> dict[str, np.ndarray]:
        """Every tensor, ``{name: array}``."""
        return {name: self.read(name) for name in self.keys()}


def read_tf_checkpoint(prefix: str | os.PathLike, *, verify_checksums: bool = True) -> dict[str, np.ndarray]:
    """Read every tensor of a TF V2 checkpoint into ``{name: np.ndarray}``."""
    return TFCheckpointReader(prefix, verify_checksums=verify_checksums).read_all()


# ----------------------------------------------------------------------------------------------------
# Writing (used by the tests; TF reads it, see tests/fixtures/make_tf_fixtures.py).


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts: list[int] = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            limit = min(len(previous), len(key))
            while shared < limit and previous[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    if not restarts:
        restarts.append(0)
    for restart in restarts:
        out += struct.pack("<I", restart)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def _shape_proto(shape: tuple[int, ...]) -> bytes:
    out = bytearray()
    for size in shape:
        dim = b"\x08" + _varint(int(size)) if size else b""
        out += b"\x12" + _varint(len(dim)) + dim
    return bytes(out)


def _entry_proto(dtype_code: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    shape_bytes = _shape_proto(shape)
    out = b"\x08" + _varint(dtype_code) + b"\x12" + _varint(len(shape_bytes)) + shape_bytes
    if offset:
        out += b"\x20" + _varint(offset)
    if size:
        out += b"\x28" + _varint(size)
    return out + b"\x35" + struct.pack("<I", mask_crc(crc))


def _atomic_write(path: Path, chunks: list[bytes] | Iterator[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_tf_checkpoint(
    prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray], *, block_size: int = 4096
) -> Path:
    """Write ``tensors`` as a single-shard TF V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-00000-of-00001``).

    Args:
        prefix: output prefix; parent folders are created.
        tensors: ``{name: array}``; dtypes as in :data:`_DTYPES` (float32, int64, ...).
        block_size: approximate SSTable data-block size (TensorFlow uses 4 KiB).

    Returns:
        The prefix as a :class:`~pathlib.Path`.
    """
    prefix = Path(prefix)
    arrays: list[tuple[str, np.ndarray, int]] = []
    for name in sorted(tensors, key=lambda key: key.encode("utf-8")):
        array = np.asarray(tensors[name])
        code = _NUMPY_TO_TF.get(array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype)
        if code is None:
            code = _NUMPY_TO_TF.get(np.dtype(array.dtype.str.replace("=", "<")))
        if code is None:
            raise TFCheckpointError(
                f"tensor {name!r}: dtype {array.dtype} cannot be written; supported: "
                f"{sorted(str(d) for d in _DTYPES.values())}"
            )
        arrays.append((name, np.array(array, dtype=_DTYPES[code], order="C"), code))  # keeps 0-d shapes

    entries: list[tuple[bytes, bytes]] = []
    offset = 0
    for name, array, code in arrays:
        data = array.tobytes()
        entries.append((name.encode("utf-8"), _entry_proto(code, array.shape, offset, len(data), crc32c(data))))
        offset += len(data)
    data_path = Path(f"{prefix}.data-00000-of-00001")
    _atomic_write(data_path, (array.tobytes() for _, array, _ in arrays))

    header = b"\x08\x01" + b"\x1a\x02\x08\x01"  # num_shards=1, endianness=LITTLE (default), version{producer=1}
    all_entries = [(b"", header), *entries]
    blocks: list[list[tuple[bytes, bytes]]] = [[]]
    current = 0
    for key, value in all_entries:
        if current >= block_size and blocks[-1]:
            blocks.append([])
            current = 0
        blocks[-1].append((key, value))
        current += len(key) + len(value) + 8

    out = bytearray()

    def emit(contents: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(contents))
        trailer = b"\x00" + struct.pack("<I", mask_crc(crc32c(contents + b"\x00")))
        out.extend(contents + trailer)
        return handle

    index_entries = [(block[-1][0], emit(_block(block))) for block in blocks]
    metaindex_handle = emit(_block([]))
    index_handle = emit(_block(index_entries, restart_interval=1))
    footer = (metaindex_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", _TABLE_MAGIC)
    out.extend(footer)
    _atomic_write(Path(f"{prefix}.index"), [bytes(out)])
    return prefix
