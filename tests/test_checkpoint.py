"""bpcore._checkpoint: safetensors files written atomically, read with validation before allocation.

The requirement: files round-trip exactly and interoperate with the ``safetensors`` package; a
process killed mid-write leaves the previous file loadable; any single flipped bit, truncation,
extension or malformed header in a bpcore-written file raises CheckpointError (never another
exception, never a wrong answer); a file claiming a huge tensor is refused without allocating it.
"""
import hashlib
import json
import os
import pathlib
import random
import stat

import numpy as np
import pytest

from bpcore import _checkpoint as ckpt
from memory import peak_bytes
from sigkill import kill_while_rewriting

CheckpointError = ckpt.CheckpointError


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _sample_tensors():
    return {
        "w32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "w64": np.linspace(-1, 1, 5),
        "steps": np.array([1, -2, 2**40], dtype=np.int64),
        "counts": np.array([[7], [-8]], dtype=np.int32),
        "empty": np.zeros((0,), dtype=np.float32),
        "empty2d": np.zeros((3, 0), dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float64),
    }


def _sample_metadata():
    return {"bpcore.version": "0.1", "note": "héllo wörld ☃", "empty": ""}


def _assert_same_tensors(got, want):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _safetensors_file(tensors, metadata=None):
    """The bytes of a minimal hand-made safetensors file (no bpcore checksum)."""
    header, data, offset = {}, b"", 0
    for name, array in tensors.items():
        tag = {"f4": "F32", "f8": "F64", "i8": "I64", "i4": "I32"}[array.dtype.str[1:]]
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": tag, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    return _file_with_header(json.dumps(header).encode(), data)


def _file_with_header(header_bytes, data=b""):
    return len(header_bytes).to_bytes(8, "little") + header_bytes + data


def _small_bpcore_file(tmp_path):
    path = tmp_path / "small.safetensors"
    ckpt.write(path, {"W": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "b": np.array([0.5, -1.5], dtype=np.float64),
                      "step": np.array([3], dtype=np.int64),
                      "none": np.zeros((0,), dtype=np.int32)},
               {"bpcore.version": "0.1", "layers": "[2,3]"})
    return path.read_bytes()


def _outcome_of_reading(path):
    """'ok', 'CheckpointError' or the name of any other exception raised by read."""
    try:
        ckpt.read(path)
    except CheckpointError:
        return "CheckpointError"
    except Exception as exc:  # noqa: BLE001 - any other type is the failure being looked for
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _temp_files(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# round trip and interoperability
# ---------------------------------------------------------------------------------------------

def test_round_trip_keeps_tensors_dtypes_shapes_and_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    ckpt.write(path, _sample_tensors(), _sample_metadata())
    tensors, metadata = ckpt.read(path)
    _assert_same_tensors(tensors, _sample_tensors())
    assert metadata == _sample_metadata()  # the integrity entries are bpcore's, not the caller's


def test_round_trip_accepts_str_paths_and_no_tensors(tmp_path):
    path = str(tmp_path / "nothing.safetensors")
    ckpt.write(path, {}, {})
    assert ckpt.read(path) == ({}, {})


def test_returned_arrays_are_writable_owned_native_and_contiguous(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, _sample_tensors(), {})
    for name, array in ckpt.read(path)[0].items():
        assert array.flags.writeable and array.flags.owndata, name
        assert array.flags.c_contiguous and array.dtype.isnative, name


def test_non_contiguous_fortran_and_big_endian_inputs_are_stored_as_their_values(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    tensors = {"strided": base[::2, ::3], "fortran": np.asfortranarray(base),
               "big_endian": base.astype(">f4"), "transposed": base.T.astype(">i8")}
    path = tmp_path / "m.safetensors"
    ckpt.write(path, tensors, {})
    got, _ = ckpt.read(path)
    for name, array in tensors.items():
        assert got[name].dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_read_header_gives_shapes_dtypes_and_metadata_without_data(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, _sample_tensors(), _sample_metadata())
    shapes, metadata = ckpt.read_header(path)
    assert shapes == {name: (a.shape, a.dtype) for name, a in _sample_tensors().items()}
    assert metadata == _sample_metadata()


def test_the_checksum_is_sha256_of_the_canonical_header_and_the_data(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, _sample_tensors(), _sample_metadata())
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    stored = header["__metadata__"].pop("bpcore.sha256")
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored == hashlib.sha256(canonical.encode() + raw[8 + n:]).hexdigest()
    assert n % 8 == 0  # the data section starts 8-byte aligned, as safetensors writes it


def test_the_safetensors_package_reads_our_files(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    ckpt.write(path, _sample_tensors(), _sample_metadata())
    _assert_same_tensors(safetensors_numpy.load_file(str(path)), _sample_tensors())
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
    assert {k: v for k, v in metadata.items() if not k.startswith("bpcore.s")
            and k != "bpcore.integrity"} == _sample_metadata()
    assert metadata["bpcore.integrity"] == "sha256" and len(metadata["bpcore.sha256"]) == 64


def test_we_read_files_written_by_the_safetensors_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(_sample_tensors(), str(path), metadata=_sample_metadata())
    tensors, metadata = ckpt.read(path)
    _assert_same_tensors(tensors, _sample_tensors())
    assert metadata == _sample_metadata()
    shapes, _ = ckpt.read_header(path)
    assert shapes["w32"] == ((3, 4), np.dtype(np.float32))


def test_we_read_files_from_other_writers_with_no_metadata_and_unpadded_headers(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(_safetensors_file({"a": np.arange(3, dtype=np.int64)}))
    tensors, metadata = ckpt.read(path)
    np.testing.assert_array_equal(tensors["a"], [0, 1, 2])
    assert metadata == {}


# ---------------------------------------------------------------------------------------------
# atomicity and durability
# ---------------------------------------------------------------------------------------------

_REWRITER = r"""
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("bpcore._checkpoint", sys.argv[1])
ckpt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ckpt)
path, n, iteration = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) * 10_000
print("ready", flush=True)
while True:
    ckpt.write(path, {"values": np.full(n, iteration, np.float32),
                      "iteration": np.array(iteration, np.int64)},
               {"iteration": str(iteration)})
    iteration += 1
"""


def _read_one_complete_version(path, n):
    tensors, metadata = ckpt.read(path)  # raises if the file is damaged or the checksum is wrong
    iteration = int(metadata["iteration"])
    assert tensors["iteration"] == iteration
    assert tensors["values"].shape == (n,)
    assert (tensors["values"] == iteration).all(), "a mix of two versions"
    return iteration


def test_sigkill_during_rewrites_leaves_one_complete_version(tmp_path):
    n = 12_000_000  # 48 MB of float32
    path = tmp_path / "ckpt.safetensors"
    ckpt.write(path, {"values": np.full(n, 0, np.float32), "iteration": np.array(0, np.int64)},
               {"iteration": "0"})
    # at least 5 kills; more (up to 12) until a kill landed mid-write and a rewrite completed,
    # so that a slow or fast machine cannot make the test vacuous
    kill_while_rewriting(_REWRITER, [ckpt.__file__, path, n], path,
                         lambda p: _read_one_complete_version(p, n), 5, 12, 1.0, seed=2024)


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def recording_replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "fsync", recording_fsync)
    monkeypatch.setattr(ckpt.os, "replace", recording_replace)
    ckpt.write(tmp_path / "m.safetensors", _sample_tensors(), {})
    expected = ["fsync file", "replace"] + (["fsync folder"] if os.name != "nt" else [])
    assert events == expected
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_removes_the_temp_file_and_keeps_the_old_file(tmp_path, monkeypatch,
                                                                         failure):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, {"a": np.ones(3)}, {"version": "old"})
    old_bytes = path.read_bytes()

    def failing_fsync(fd):
        raise failure

    monkeypatch.setattr(ckpt.os, "fsync", failing_fsync)
    with pytest.raises(type(failure)):
        ckpt.write(path, {"a": np.zeros(3)}, {"version": "new"})
    assert _temp_files(tmp_path) == []
    assert path.read_bytes() == old_bytes


@pytest.mark.parametrize("tensors, metadata, error, fragment", [
    ({"half": np.ones(2, np.float16)}, {}, TypeError, "'half'.*float16"),
    ({"flags": np.ones(2, bool)}, {}, TypeError, "'flags'.*bool"),
    ({"z": np.ones(2, np.complex64)}, {}, TypeError, "'z'.*complex64"),
    ({"objs": np.array([None, 1], dtype=object)}, {}, TypeError, "'objs'.*object"),
    ({"u": np.ones(2, np.uint64)}, {}, TypeError, "'u'.*uint64"),
    ({3: np.ones(2)}, {}, TypeError, "tensor name 3"),
    ({"__metadata__": np.ones(2)}, {}, ValueError, "__metadata__"),
    ({"a": np.ones(2)}, {"epoch": 3}, TypeError, "epoch"),
    ({"a": np.ones(2)}, {3: "x"}, TypeError, "metadata key 3"),
    ({"a": np.ones(2)}, {"bpcore.sha256": "0" * 64}, ValueError, "reserved"),
    ({"a": np.ones(2)}, {"bpcore.integrity": "sha256"}, ValueError, "reserved"),
    ({"\ud800": np.ones(2)}, {}, ValueError, "UTF-8"),
])
def test_bad_write_arguments_raise_before_touching_the_disk(tmp_path, tensors, metadata, error,
                                                            fragment):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, {"a": np.ones(3)}, {})
    old_bytes = path.read_bytes()
    with pytest.raises(error, match=fragment):
        ckpt.write(path, tensors, metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert path.read_bytes() == old_bytes


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_files_get_the_umask_mode_and_rewrites_keep_the_old_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    old_umask = os.umask(0o027)
    try:
        ckpt.write(path, {"a": np.ones(2)}, {})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o604)
    ckpt.write(path, {"a": np.zeros(2)}, {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


# ---------------------------------------------------------------------------------------------
# damaged files
# ---------------------------------------------------------------------------------------------

def test_every_single_bit_flip_is_refused(tmp_path):
    original = _small_bpcore_file(tmp_path)
    assert 300 <= len(original) <= 2048
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(original)
    assert _outcome_of_reading(path) == "ok"
    failures = []
    for position in range(len(original)):
        for bit in range(8):
            damaged = bytearray(original)
            damaged[position] ^= 1 << bit
            path.write_bytes(damaged)
            outcome = _outcome_of_reading(path)
            if outcome != "CheckpointError":
                failures.append((position, bit, outcome))
    assert failures == [], f"{len(failures)} flips not refused, e.g. {failures[:5]}"


def test_flipping_the_case_of_a_unicode_escape_is_refused(tmp_path):
    # Same JSON meaning, different bytes: only the canonical-header rule catches this one.
    path = tmp_path / "m.safetensors"
    ckpt.write(path, {"a": np.ones(2)}, {"name": "é"})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    escaped = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    assert b"\\u00e9" in escaped
    for text in (escaped, escaped.replace(b"\\u00e9", b"\\u00E9"),
                 json.dumps(header, indent=1, sort_keys=True).encode()):
        path.write_bytes(_file_with_header(text, raw[8 + n:]))
        with pytest.raises(CheckpointError, match="canonical"):
            ckpt.read(path)


def test_every_truncation_is_refused(tmp_path):
    original = _small_bpcore_file(tmp_path)
    foreign = _safetensors_file({"x": np.arange(5, dtype=np.int32)}, {"k": "v"})
    path = tmp_path / "cut.safetensors"
    for whole in (original, foreign):
        outcomes = set()
        for length in range(len(whole)):
            path.write_bytes(whole[:length])
            outcomes.add(_outcome_of_reading(path))
        assert outcomes == {"CheckpointError"}


@pytest.mark.parametrize("tail", [b"\0", b" ", b"\n", b"0" * 8, bytes(range(256))])
def test_trailing_bytes_are_refused(tmp_path, tail):
    path = tmp_path / "long.safetensors"
    for whole in (_small_bpcore_file(tmp_path), _safetensors_file({"x": np.ones(2)})):
        path.write_bytes(whole + tail)
        with pytest.raises(CheckpointError, match="describe .* bytes of data but the file holds"):
            ckpt.read(path)


def test_random_multi_byte_damage_is_refused(tmp_path):
    original = _small_bpcore_file(tmp_path)
    path = tmp_path / "damaged.safetensors"
    rng = random.Random(7)
    outcomes = set()
    for _ in range(1500):
        damaged = bytearray(original)
        kind = rng.choice(["overwrite", "insert", "delete"])
        position = rng.randrange(len(damaged))
        if kind == "overwrite":
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind == "insert":
            damaged[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        else:
            del damaged[position:position + rng.randint(1, 9)]
        if damaged == original:
            continue
        path.write_bytes(damaged)
        outcomes.add(_outcome_of_reading(path))
    assert outcomes == {"CheckpointError"}


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    rng = random.Random(11)
    outcomes = set()
    for _ in range(1500):
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        # Half of them get a plausible length field so the parser gets past the first check.
        if rng.random() < 0.5:
            body = _file_with_header(b"{" + body)
        path.write_bytes(body)
        outcomes.add(_outcome_of_reading(path))
    assert outcomes == {"CheckpointError"}


def _random_json_value(rng, depth=0):
    choices = [lambda: rng.randint(-3, 40), lambda: rng.random(), lambda: None,
               lambda: rng.choice([True, False]),
               lambda: rng.choice(["F32", "I64", "F16", "", "x"]),
               lambda: [_random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]]
    if depth < 2:
        keys = ["dtype", "shape", "data_offsets", "k"]
        choices.append(lambda: {rng.choice(keys): _random_json_value(rng, depth + 1)
                                for _ in range(rng.randint(0, 3))})
    return rng.choice(choices)()


_ITEMSIZE = {"F32": 4, "F64": 8, "I32": 4, "I64": 8}


def _consistent_header_and_data(rng):
    header, offset = {}, 0
    for i in range(rng.randint(0, 3)):
        tag = rng.choice(sorted(_ITEMSIZE))
        shape = [rng.randint(0, 3) for _ in range(rng.randint(0, 2))]
        size = _ITEMSIZE[tag] * int(np.prod(shape))
        header[f"t{i}"] = {"dtype": tag, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if rng.random() < 0.3:
        header["__metadata__"] = {"k": "v"}
    return header, bytes(rng.randrange(256) for _ in range(offset))


def _damage_header_or_data(rng, header, data):
    """One random change that may or may not keep the file valid."""
    entries = [v for k, v in header.items() if k != "__metadata__"]
    kind = rng.choice(["field", "offset", "data", "drop", "extra", "metadata", "entry"])
    if kind == "field" and entries:
        field = rng.choice(["dtype", "shape", "data_offsets"])
        rng.choice(entries)[field] = _random_json_value(rng)
    elif kind == "offset" and entries:
        rng.choice(entries)["data_offsets"][rng.randrange(2)] += rng.choice([-8, -4, -1, 1, 4, 8])
    elif kind == "data":
        data = data[:rng.randrange(len(data) + 1)] if rng.random() < 0.5 else data + b"\0" * 4
    elif kind == "drop" and entries:
        del rng.choice(entries)[rng.choice(["dtype", "shape", "data_offsets"])]
    elif kind == "extra" and entries:
        rng.choice(entries)["extra"] = _random_json_value(rng)
    elif kind == "metadata":
        header["__metadata__"] = rng.choice([{"k": 1}, [], "x", {"bpcore.integrity": "sha256"},
                                             {"bpcore.sha256": "0" * 64}, {"k": None}])
    elif kind == "entry":
        header[rng.choice(["t0", "u"])] = _random_json_value(rng)
    return header, data


def test_random_headers_give_checkpoint_error_or_a_consistent_result(tmp_path):
    path = tmp_path / "fuzz.safetensors"
    rng = random.Random(13)
    outcomes = {"ok": 0, "CheckpointError": 0}
    for _ in range(2500):
        header, data = _consistent_header_and_data(rng)
        if rng.random() < 0.8:
            header, data = _damage_header_or_data(rng, header, data)
        path.write_bytes(_file_with_header(json.dumps(header).encode(), data))
        outcome = _outcome_of_reading(path)
        assert outcome in outcomes, outcome
        outcomes[outcome] += 1
        if outcome == "ok":  # a valid file: the header must describe what read returned
            tensors, _ = ckpt.read(path)
            shapes, _ = ckpt.read_header(path)
            assert {k: (a.shape, a.dtype) for k, a in tensors.items()} == shapes
    assert outcomes["ok"] > 300 and outcomes["CheckpointError"] > 1000  # the fuzz covers both


def test_a_huge_claim_is_refused_without_allocating_it(tmp_path):
    claims = [
        # offsets agree with the shape, but the data section is 1 KB
        {"w": {"dtype": "F32", "shape": [16000, 16000], "data_offsets": [0, 16000 * 16000 * 4]}},
        # offsets agree with the file, the shape does not
        {"w": {"dtype": "F32", "shape": [16000, 16000], "data_offsets": [0, 1024]}},
        {"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 1024]}},
    ]
    path = tmp_path / "huge.safetensors"
    for claim in claims:
        path.write_bytes(_file_with_header(json.dumps(claim).encode(), bytes(1024)))
        def refuse():
            with pytest.raises(CheckpointError, match="'w'|describe"):
                ckpt.read(path)

        peak = peak_bytes(refuse)
        assert peak < 1_000_000, f"peak {peak} bytes while refusing {claim}"


def test_tracemalloc_sees_the_tensors_read_allocates(tmp_path):
    # Guards the test above: a read that did allocate would be visible to tracemalloc.
    path = tmp_path / "big.safetensors"
    ckpt.write(path, {"w": np.ones(1_000_000, np.float32)}, {})
    assert peak_bytes(lambda: ckpt.read(path)) >= 4_000_000


@pytest.mark.parametrize("length", [2**63, 2**64 - 1, 100 * 1024 * 1024 + 1, 200 * 1024 * 1024])
def test_a_header_length_past_the_end_or_the_cap_is_refused(tmp_path, length):
    path = tmp_path / "long_header.safetensors"
    path.write_bytes(length.to_bytes(8, "little") + b"{}" + bytes(30))
    with pytest.raises(CheckpointError, match="header length"):
        ckpt.read_header(path)


def test_a_header_length_over_the_cap_is_refused_even_if_the_file_is_that_long(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(ckpt, "MAX_HEADER_BYTES", 64)
    path = tmp_path / "long_header.safetensors"
    header = b"{" + b" " * 98 + b"}"
    path.write_bytes(_file_with_header(header))
    with pytest.raises(CheckpointError, match="cap 64"):
        ckpt.read(path)


@pytest.mark.parametrize("header, fragment", [
    (b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
     b'"a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}', "'a' twice"),
    (b'{"__metadata__":{"k":"1","k":"2"}}', "'k' twice"),
    (b'{"\xff":1}', "UTF-8"),
    (b'{"a":"\xc3"}', "UTF-8"),
    (b'[]', "start with"),
    (b' {}', "start with"),
    (b'{"a":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested|tensor 'a'"),
    (b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', "not valid JSON"),
    (b'{"a":{"dtype":"F32","shape":[1' + b"0" * 5000 + b'],"data_offsets":[0,4]}}', "JSON"),
    (b'{"__metadata__":[]}', "__metadata__"),
    (b'{"__metadata__":{"k":1}}', "__metadata__\\['k'\\]"),
    (b'{"__metadata__":{"bpcore.integrity":"sha256"}}', "no __metadata__\\['bpcore.sha256'\\]"),
    (b'{"__metadata__":{"bpcore.sha256":"00"}}', "bpcore.integrity"),
    (b'{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', "unsupported dtype 'F16'"),
    (b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', "shape"),
    (b'{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', "shape"),
    (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', "data_offsets"),
    (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', "fields"),
    (b'{"a":{"dtype":"F32","shape":[1]}}', "fields"),
    (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "overlaps"),
    (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "gap"),
])
def test_malformed_headers_are_refused_with_the_reason(tmp_path, header, fragment):
    path = tmp_path / "bad.safetensors"
    # Headers that describe tensors get 8 bytes of data, so the size check does not fire first.
    path.write_bytes(_file_with_header(header, bytes(8 if b"data_offsets" in header else 0)))
    with pytest.raises(CheckpointError, match=fragment):
        ckpt.read(path)
    with pytest.raises(CheckpointError, match=fragment):
        ckpt.read_header(path)


def test_missing_and_empty_files_are_refused_with_the_path(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(CheckpointError, match="missing.safetensors: no such file") as info:
        ckpt.read(missing)
    assert info.value.path == str(missing) and isinstance(info.value, ValueError)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors: file is 0 bytes"):
        ckpt.read_header(empty)


def test_corrupted_data_is_refused_by_read_but_not_seen_by_read_header(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, {"a": np.zeros(4, np.float32)}, {})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40
    path.write_bytes(raw)
    assert ckpt.read_header(path)[0] == {"a": ((4,), np.dtype(np.float32))}
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.read(path)


# ---------------------------------------------------------------------------------------------
# expect
# ---------------------------------------------------------------------------------------------

def test_expect_matching_the_file_reads_it(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.write(path, _sample_tensors(), {})
    expect = {name: (a.shape, a.dtype) for name, a in _sample_tensors().items()}
    expect["w32"] = ([3, 4], "float32")  # lists and dtype names are accepted too
    _assert_same_tensors(ckpt.read(path, expect=expect)[0], _sample_tensors())


@pytest.mark.parametrize("change, fragment", [
    (lambda e: e.update(V=e.pop("W")), r"tensor 'V' is missing; expected shape \(2, 3\) float32"),
    (lambda e: e.update(extra=((1,), np.float32)), r"tensor 'extra' is missing"),
    (lambda e: e.pop("b") and e.pop("step") and e.pop("none"),
     r"unexpected tensor\(s\) 'b', 'none', 'step'"),
    (lambda e: e.update(W=((3, 2), np.float32)),
     r"tensor 'W': expected shape \(3, 2\) float32, found shape \(2, 3\) float32"),
    (lambda e: e.update(W=((2, 3), np.float64)),
     r"tensor 'W': expected shape \(2, 3\) float64, found shape \(2, 3\) float32"),
    (lambda e: e.update(step=((1,), np.int32)),
     r"tensor 'step': expected shape \(1,\) int32, found shape \(1,\) int64"),
])
def test_expect_mismatches_name_the_tensor_and_both_shapes(tmp_path, change, fragment):
    _small_bpcore_file(tmp_path)
    path = tmp_path / "small.safetensors"
    expect, _ = ckpt.read_header(path)
    change(expect)
    with pytest.raises(CheckpointError, match=fragment):
        ckpt.read(path, expect=expect)
