"""The file layer of bpcore checkpoints: tensors and string metadata in the safetensors format.

Format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}`` (space-padded), then the data section: every tensor row-major and
little-endian, at offsets relative to the start of the data section, back to back with no gaps.
Files written here are read by the ``safetensors`` package and the other way round; this module
needs only the standard library and NumPy, and never uses pickle.

Integrity. ``write`` adds two reserved metadata entries:

* ``"bpcore.integrity": "sha256"`` -- the promise that the file carries a checksum, and
* ``"bpcore.sha256"`` -- sha256 hex of the canonical JSON of the header without this entry
  (``sort_keys``, no spaces, UTF-8) followed by the data section bytes.

A file carrying either entry is a bpcore file: ``read`` then requires both, requires the header
bytes to be exactly the canonical JSON that ``write`` produces, and verifies the checksum. Each
rule closes a gap that a single flipped bit could otherwise slip through: the promise makes a
damaged checksum *name* an error rather than "no checksum"; the promise itself is covered by the
checksum; and the canonical-bytes rule catches edits that change the JSON text but not what it
means (``"\\u00e9"`` vs ``"\\u00E9"``, extra whitespace). Files from other safetensors writers
carry neither entry: they are accepted after the same structural validation. The reserved
entries are stripped from the metadata that ``read``/``read_header`` return, and ``write``
refuses them in its input, so ``read(write(t, m))`` gives back exactly ``(t, m)``.

Errors. Every problem with a file's content -- and a missing file -- raises ``CheckpointError``
(a ``ValueError``) whose message starts with the path. Other operating-system errors (no
permission, a directory, an I/O error) propagate unchanged: they are about the environment, not
about the file, and a caller that discards "corrupt" checkpoints must not discard those.

Atomicity. ``write`` writes a temporary file ``.<name>.<random>.tmp`` in the destination folder,
fsyncs it, renames it onto the path and fsyncs the folder, so the path always holds either the old
or the new complete file. A process killed mid-write can leave its temporary file behind; ``write``
does not delete other such files, because another process may be writing one right now.
"""
import errno
import hashlib
import json
import math
import os
import stat
import sys
import tempfile

import numpy as np

from bpcore.errors import CheckpointError

__all__ = ["CheckpointError", "write", "read", "read_header"]

# safetensors dtype tag <-> NumPy dtype (as stored in the file: little-endian).
_DTYPE_OF_TAG = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_TAG_OF_KIND_SIZE = {(dt.kind, dt.itemsize): tag for tag, dt in _DTYPE_OF_TAG.items()}

METADATA_KEY = "__metadata__"
CHECKSUM_KEY = "bpcore.sha256"
INTEGRITY_KEY = "bpcore.integrity"
INTEGRITY_SCHEME = "sha256"
RESERVED_METADATA_KEYS = frozenset({CHECKSUM_KEY, INTEGRITY_KEY})
TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})

LENGTH_PREFIX_BYTES = 8
HEADER_ALIGNMENT = 8
# A real header is a few bytes per tensor; the cap bounds what a hostile length field can make us
# allocate before anything else is checked.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Reading in pieces keeps the hash update and the copy in cache and lets short reads be detected.
READ_CHUNK_BYTES = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------

def write(path, tensors, metadata):
    """Atomically and durably write ``tensors`` (name -> array) and ``metadata`` (str -> str).

    Supported dtypes: float32, float64, int32, int64 (any byte order or memory layout; stored
    little-endian and C-ordered). Raises TypeError for a non-str name, key or value or an
    unsupported dtype, and ValueError for a reserved name or key, all before touching the disk.
    """
    _check_target(path)
    arrays = _prepare_tensors(tensors)
    user_metadata = _prepare_metadata(metadata)
    header = _header_for(arrays, {**user_metadata, INTEGRITY_KEY: INTEGRITY_SCHEME})
    header[METADATA_KEY][CHECKSUM_KEY] = _checksum(header, (a for _, a in arrays))
    header_bytes = _padded_canonical_json(header)
    _write_atomically(path, header_bytes, [a for _, a in arrays])


def _check_target(path):
    """The rename that makes a write atomic replaces whatever has the name: refuse a name that
    is not a regular file (a FIFO, a device such as /dev/null, a folder), before writing."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ValueError(f"path: cannot write {os.fspath(path)!r} ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"path: expected a regular file or a new name, got {os.fspath(path)!r}, "
                         f"which is not a regular file (a checkpoint replaces the file it is "
                         f"written to)")


def _prepare_tensors(tensors):
    """(name, little-endian C-contiguous array) pairs in name order, validated."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors: expected a dict of name -> array, got {type(tensors).__name__}")
    prepared = []
    for name, value in tensors.items():
        _check_name(name, "tensor name")
        if name == METADATA_KEY:
            raise ValueError(f"tensor name {name!r} is reserved by the safetensors format")
        array = np.asarray(value)
        tag = _TAG_OF_KIND_SIZE.get((array.dtype.kind, array.dtype.itemsize))
        if tag is None:
            raise TypeError(f"tensor {name!r}: unsupported dtype {array.dtype}; expected one of "
                            "float32, float64, int32, int64")
        stored = np.require(array, dtype=_DTYPE_OF_TAG[tag], requirements="C")
        prepared.append((name, stored))
    prepared.sort(key=lambda item: item[0])
    return prepared


def _prepare_metadata(metadata):
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict of str -> str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        _check_name(key, "metadata key")
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved for bpcore's checksum")
        if not isinstance(value, str):
            raise TypeError(f"metadata[{key!r}]: expected str, got {type(value).__name__}")
        _check_encodable(value, f"metadata[{key!r}]")
    return dict(metadata)


def _check_name(name, what):
    if not isinstance(name, str):
        raise TypeError(f"{what} {name!r}: expected str, got {type(name).__name__}")
    _check_encodable(name, f"{what} {name!r}")


def _check_encodable(text, what):
    # A lone surrogate would only fail later, half-way through writing the header.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: not encodable as UTF-8") from None


def _header_for(arrays, metadata):
    header = {METADATA_KEY: metadata}
    offset = 0
    for name, array in arrays:
        header[name] = {"dtype": _tag_of(array.dtype), "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    return header


def _tag_of(dtype):
    return _TAG_OF_KIND_SIZE[(dtype.kind, dtype.itemsize)]


def _write_atomically(path, header_bytes, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    mode = _mode_for_new_file(path)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                    suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(header_bytes).to_bytes(LENGTH_PREFIX_BYTES, "little"))
            f.write(header_bytes)
            for array in arrays:
                f.write(_bytes_of(array))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, mode)  # mkstemp creates 0600; a checkpoint should look like any file
        os.replace(tmp_path, path)
    except BaseException:
        _remove_if_present(tmp_path)
        raise
    _fsync_folder(folder)


def _bytes_of(array):
    # A flat byte view: no copy, and works for 0-d and empty arrays alike.
    return memoryview(array.reshape(-1).view(np.uint8))


def _mode_for_new_file(path):
    """The permission bits the checkpoint should get: the old file's, or what open() would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


def _current_umask():
    # Linux reports it without changing it; elsewhere set-and-restore is the only way, which for
    # an instant gives files created by other threads the common default umask 022.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_folder(folder):
    """Make the rename itself durable; Windows cannot open a folder, and needs no such step."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (certain network mounts) do not support fsync on a folder.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# canonical header and checksum (shared by write and read)
# ---------------------------------------------------------------------------------------------

def _canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _padded_canonical_json(header):
    text = _canonical_json(header)
    return text + b" " * (-len(text) % HEADER_ALIGNMENT)


def _header_without_checksum(header):
    metadata = {k: v for k, v in header[METADATA_KEY].items() if k != CHECKSUM_KEY}
    return {**header, METADATA_KEY: metadata}


def _checksum(header_without_checksum, data_chunks):
    digest = hashlib.sha256(_canonical_json(header_without_checksum))
    for chunk in data_chunks:
        digest.update(_bytes_of(chunk))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------------------

class _Entry:
    """One validated tensor entry of a header."""

    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


class _Header:
    """A validated header: the JSON, entries in offset order, user metadata, the checksum."""

    def __init__(self, parsed, entries, metadata, checksum, data_start):
        self.parsed = parsed
        self.entries = entries
        self.metadata = metadata
        self.checksum = checksum        # None for files from other safetensors writers
        self.data_start = data_start


def read_header(path):
    """``({name: (shape, dtype)}, metadata)`` of a checkpoint, validated; no tensor data is read.

    The checksum covers the data too, so only ``read`` verifies it; everything else that ``read``
    checks before reading data (structure, sizes, canonical bpcore header) is checked here.
    """
    with _open_for_reading(path) as f:
        header = _read_and_validate_header(path, f)
    shapes = {e.name: (e.shape, _native(e.dtype)) for e in header.entries}
    return shapes, dict(header.metadata)


def read(path, expect=None):
    """``(tensors, metadata)`` of a checkpoint, everything validated before it is allocated.

    ``expect`` (name -> (shape, dtype)), when given, must match the file exactly: the same names,
    shapes and dtypes. Returned arrays are writable, owned, native-endian and C-contiguous.
    """
    with _open_for_reading(path) as f:
        header = _read_and_validate_header(path, f)
        if expect is not None:
            _check_expected(path, header.entries, expect)
        tensors = _read_tensors(path, f, header)
    return tensors, dict(header.metadata)


def _open_for_reading(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None


def _read_and_validate_header(path, f):
    file_size = os.fstat(f.fileno()).st_size
    header_size = _read_header_size(path, f, file_size)
    raw = _read_exactly(path, f, header_size, "header")
    parsed = _parse_header_json(path, raw)
    data_size = file_size - LENGTH_PREFIX_BYTES - header_size
    entries = _validate_entries(path, parsed, data_size)
    metadata, checksum = _validate_metadata(path, parsed, raw)
    return _Header(parsed, entries, metadata, checksum, LENGTH_PREFIX_BYTES + header_size)


def _read_header_size(path, f, file_size):
    if file_size < LENGTH_PREFIX_BYTES:
        raise CheckpointError(path, f"file is {file_size} bytes, too short for the "
                                    f"{LENGTH_PREFIX_BYTES}-byte header length")
    header_size = int.from_bytes(_read_exactly(path, f, LENGTH_PREFIX_BYTES, "header length"),
                                 "little")
    room = file_size - LENGTH_PREFIX_BYTES
    if header_size > min(room, MAX_HEADER_BYTES):
        raise CheckpointError(path, f"header length {header_size} exceeds the "
                                    f"{room} bytes after the length field (cap "
                                    f"{MAX_HEADER_BYTES}); file truncated or corrupted")
    if header_size < 2:
        raise CheckpointError(path, f"header length {header_size} is too small for a JSON object")
    return header_size


def _read_exactly(path, f, size, what):
    data = f.read(size)
    if len(data) != size:
        raise CheckpointError(path, f"file ended while reading the {what} ({len(data)} of {size} "
                                    "bytes); it changed while being read")
    return data


class _DuplicateKey(Exception):
    pass


def _reject_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _parse_header_json(path, raw):
    if raw[:1] != b"{":
        raise CheckpointError(path, "header does not start with '{'; not a safetensors file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, f"header is not valid UTF-8 ({exc.reason} at byte "
                                    f"{exc.start})") from None
    try:
        parsed = json.loads(text, object_pairs_hook=_reject_duplicate_keys,
                            parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise CheckpointError(path, f"header has the key {exc.args[0]!r} twice") from None
    except RecursionError:
        raise CheckpointError(path, "header JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise CheckpointError(path, f"header is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise CheckpointError(path, f"header is a JSON {type(parsed).__name__}, not an object")
    return parsed


def _validate_entries(path, parsed, data_size):
    """Tensor entries in offset order; they must tile the data section exactly."""
    entries = [_validate_entry(path, name, fields)
               for name, fields in parsed.items() if name != METADATA_KEY]
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for e in entries:
        if e.begin != position:
            problem = "overlaps the previous tensor" if e.begin < position else \
                f"leaves a gap of {e.begin - position} bytes before it"
            raise CheckpointError(path, f"tensor {e.name!r} at data_offsets [{e.begin}, {e.end}] "
                                        f"{problem}")
        position = e.end
    if position != data_size:
        raise CheckpointError(path, f"the tensors describe {position} bytes of data but the file "
                                    f"holds {data_size}; file truncated, extended or corrupted")
    return entries


def _validate_entry(path, name, fields):
    if not isinstance(fields, dict):
        raise CheckpointError(path, f"tensor {name!r}: entry is a JSON "
                                    f"{type(fields).__name__}, not an object")
    if set(fields) != TENSOR_FIELDS:
        raise CheckpointError(path, f"tensor {name!r}: fields {sorted(fields)}, expected "
                                    f"{sorted(TENSOR_FIELDS)}")
    tag, shape, offsets = fields["dtype"], fields["shape"], fields["data_offsets"]
    if not isinstance(tag, str) or tag not in _DTYPE_OF_TAG:
        raise CheckpointError(path, f"tensor {name!r}: unsupported dtype {tag!r}; expected one "
                                    f"of {sorted(_DTYPE_OF_TAG)}")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise CheckpointError(path, f"tensor {name!r}: shape {shape!r} is not a list of "
                                    "non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_count(n) for n in offsets) or offsets[0] > offsets[1]):
        raise CheckpointError(path, f"tensor {name!r}: data_offsets {offsets!r} is not "
                                    "[begin, end] with 0 <= begin <= end")
    dtype = _DTYPE_OF_TAG[tag]
    expected_bytes = math.prod(shape) * dtype.itemsize
    begin, end = offsets
    if end - begin != expected_bytes:
        raise CheckpointError(path, f"tensor {name!r}: shape {shape} of {tag} needs "
                                    f"{expected_bytes} bytes but data_offsets [{begin}, {end}] "
                                    f"span {end - begin}")
    return _Entry(name, dtype, tuple(shape), begin, end)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _validate_metadata(path, parsed, raw):
    """(user metadata, checksum or None); a bpcore file must be canonical and promise a checksum."""
    metadata = parsed.get(METADATA_KEY, {})
    if not isinstance(metadata, dict):
        raise CheckpointError(path, f"__metadata__ is a JSON {type(metadata).__name__}, "
                                    "not an object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise CheckpointError(path, f"__metadata__[{key!r}] is a JSON "
                                        f"{type(value).__name__}, not a string")
    if not RESERVED_METADATA_KEYS & metadata.keys():
        return metadata, None
    if metadata.get(INTEGRITY_KEY) != INTEGRITY_SCHEME:
        raise CheckpointError(path, f"__metadata__[{INTEGRITY_KEY!r}] is "
                                    f"{metadata.get(INTEGRITY_KEY)!r}, expected "
                                    f"{INTEGRITY_SCHEME!r}; file corrupted")
    if CHECKSUM_KEY not in metadata:
        raise CheckpointError(path, f"the file promises a checksum but has no "
                                    f"__metadata__[{CHECKSUM_KEY!r}]; file corrupted")
    if raw != _padded_canonical_json(parsed):
        raise CheckpointError(path, "header differs from the canonical form bpcore writes; "
                                    "file corrupted")
    user_metadata = {k: v for k, v in metadata.items() if k not in RESERVED_METADATA_KEYS}
    return user_metadata, metadata[CHECKSUM_KEY]


def _check_expected(path, entries, expect):
    found = {e.name: e for e in entries}
    for name, (shape, dtype) in expect.items():
        want = (tuple(int(n) for n in shape), np.dtype(dtype))
        if name not in found:
            raise CheckpointError(path, f"tensor {name!r} is missing; expected shape {want[0]} "
                                        f"{want[1]}")
        e = found[name]
        have = (e.shape, _native(e.dtype))
        if have != want:
            raise CheckpointError(path, f"tensor {name!r}: expected shape {want[0]} {want[1]}, "
                                        f"found shape {have[0]} {have[1]}")
    extra = sorted(found.keys() - expect.keys())
    if extra:
        raise CheckpointError(path, f"unexpected tensor(s) {', '.join(map(repr, extra))} not in "
                                    "the expected set")


def _native(dtype):
    return dtype.newbyteorder("=")


def _read_tensors(path, f, header):
    """Read the data section into fresh arrays, verifying the checksum when there is one."""
    digest = None
    if header.checksum is not None:
        digest = hashlib.sha256(_canonical_json(_header_without_checksum(header.parsed)))
    f.seek(header.data_start)
    tensors = {}
    for e in header.entries:  # offset order, so this reads the data section front to back
        array = np.empty(e.shape, dtype=e.dtype)
        _read_into(path, f, _bytes_of(array), e.name)
        if digest is not None:
            digest.update(_bytes_of(array))
        tensors[e.name] = _to_native(array)
    if digest is not None and digest.hexdigest() != header.checksum:
        raise CheckpointError(path, "checksum mismatch: the file is corrupted")
    return tensors


def _read_into(path, f, buffer, name):
    filled = 0
    while filled < len(buffer):
        piece = buffer[filled:filled + READ_CHUNK_BYTES]
        got = f.readinto(piece)
        if not got:
            raise CheckpointError(path, f"file ended while reading tensor {name!r}; it changed "
                                        "while being read")
        filled += got


def _to_native(array):
    if sys.byteorder == "little":
        return array
    return array.astype(_native(array.dtype))
