"""Checkpoint files: a network's architecture and weights, and optionally its optimizer's state.

Files are safetensors (written and read by bpcore._checkpoint: atomic, durable, checksummed,
sizes validated before anything is allocated, never unpickled). Tensors are named by layer,
``layers.{i}.W``, ``layers.{i}.b`` and ``layers.{i}.mask``, and ``optimizer.{buffer}``; the
metadata holds the format, the architecture (JSON), the dtype, the bpcore version and the
optimizer's settings and step count (JSON). The ``.npz`` files of bpcore 0.1 still load.

This module knows files and plain data only; bpcore.model turns them into networks.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from bpcore import _checkpoint
from bpcore._checkpoint import CheckpointError
from bpcore._validation import check_path
from bpcore._version import __version__
from bpcore.layers import NAMED_LAYERS

__all__ = ["CheckpointError", "save_network", "load_network", "load_optimizer_state"]

FORMAT = "bpcore-network-2"
NPZ_FORMAT = "bpcore-network-1"  # bpcore 0.1's .npz files, read-only
OPTIMIZER_PREFIX = "optimizer."
_LAYER_TYPES = ("dense",) + tuple(NAMED_LAYERS)


def save_network(path, spec, tensors, optimizer_state=None, extra=None):
    """Write the architecture `spec`, the layer `tensors` and, if given, an optimizer's
    state_dict() and the JSON data `extra` to path (a safetensors file), atomically."""
    check_path(path)
    metadata = {"format": FORMAT, "architecture": json.dumps(spec), "dtype": spec["dtype"],
                "bpcore_version": __version__}
    if extra is not None:
        try:
            metadata["extra"] = json.dumps(extra, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"extra: expected JSON data (dicts, lists, strings, numbers), "
                            f"got {type(extra).__name__} ({exc})") from None
    tensors = dict(tensors)
    if optimizer_state is not None:
        settings = {k: v for k, v in optimizer_state.items() if k != "buffers"}
        metadata["optimizer"] = json.dumps(settings)
        for name, buffer in optimizer_state["buffers"].items():
            tensors[OPTIMIZER_PREFIX + name] = buffer
    _checkpoint.write(path, tensors, metadata)


def load_network(path):
    """(architecture spec, {tensor name: array}) of the network saved at path, every name,
    shape and dtype checked against the architecture."""
    check_path(path)
    if _is_npz(path):
        return _load_npz(path)
    shapes, metadata = _checkpoint.read_header(path)
    spec = _architecture(path, metadata)
    expect = _expected_tensors(spec)
    expect.update({name: shape for name, shape in shapes.items()
                   if name.startswith(OPTIMIZER_PREFIX)})
    tensors, _ = _checkpoint.read(path, expect)
    return spec, {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}


def load_optimizer_state(path):
    """The optimizer state_dict() saved with the network at path."""
    check_path(path)
    shapes, metadata = _checkpoint.read_header(path)
    _architecture(path, metadata)
    if "optimizer" not in metadata:
        raise CheckpointError(path, "holds no optimizer state (save it with "
                                    "model.save(path, optimizer=...))")
    state = _json(path, metadata["optimizer"], "optimizer")
    if not isinstance(state, dict):
        raise CheckpointError(path, "optimizer: expected a JSON object")
    tensors, _ = _checkpoint.read(path)
    state["buffers"] = {name[len(OPTIMIZER_PREFIX):]: array for name, array in tensors.items()
                        if name.startswith(OPTIMIZER_PREFIX)}
    return state


def load_extra(path):
    """The JSON data saved with the network at path (``save(..., extra=...)``), or None."""
    check_path(path)
    _, metadata = _checkpoint.read_header(path)
    _architecture(path, metadata)
    return _json(path, metadata["extra"], "extra") if "extra" in metadata else None


def _json(path, text, what):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CheckpointError(path, f"{what}: not valid JSON ({exc})") from None


def _architecture(path, metadata):
    """The architecture in the metadata, checked to describe a network that can be built: each
    layer known, sizes positive and chained, an MLP's sizes equal to its layers'."""
    if metadata.get("format") != FORMAT:
        raise CheckpointError(path, f"expected format {FORMAT!r}, got "
                                    f"{metadata.get('format')!r}")
    spec = _json(path, metadata.get("architecture", ""), "architecture")
    try:
        _check_architecture(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"architecture: {exc}") from None
    return spec


def _check_architecture(spec):
    if np.dtype(spec["dtype"]) not in (np.float32, np.float64):
        raise ValueError(f"dtype {spec['dtype']!r} is not float32 or float64")
    widths = []
    for i, layer in enumerate(spec["layers"]):
        if layer["type"] not in _LAYER_TYPES:
            raise ValueError(f"layers[{i}] has unknown type {layer['type']!r}")
        if layer["type"] == "dense":
            fi, fo = layer["fan_in"], layer["fan_out"]
            if not all(type(v) is int and 0 < v < 2**31 for v in (fi, fo)):
                raise ValueError(f"layers[{i}] has sizes {fi!r}, {fo!r}")
            if widths and widths[-1] != fi:
                raise ValueError(f"layers[{i}] takes {fi} inputs after {widths[-1]} outputs")
            widths += [fi, fo] if not widths else [fo]
    if not widths:
        raise ValueError("no dense layer")
    if "mlp" in spec and list(spec["mlp"]["sizes"]) != widths:
        raise ValueError(f"MLP sizes {spec['mlp']['sizes']} differ from its layers' {widths}")


def _expected_tensors(spec):
    dtype = np.dtype(spec["dtype"])
    expect = {}
    for i, layer in enumerate(spec["layers"]):
        if layer["type"] == "dense":
            fi, fo = layer["fan_in"], layer["fan_out"]
            expect[f"layers.{i}.W"] = ((fi, fo), dtype)
            expect[f"layers.{i}.b"] = ((fo,), dtype)
            if layer.get("mask"):
                expect[f"layers.{i}.mask"] = ((fi, fo), dtype)
    return expect


def _is_npz(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"  # a zip archive: NumPy's .npz
    except FileNotFoundError:
        if not str(path).endswith(".npz") and os.path.exists(str(path) + ".npz"):
            return True
        raise CheckpointError(path, "no such file") from None


def _load_npz(path):
    """bpcore 0.1's .npz: a JSON spec, the flat parameters and the masks (no pickle)."""
    if not os.path.exists(path):
        path = str(path) + ".npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            spec = json.loads(str(f["spec"]))
            flat = np.array(f["flat_params"])
            masks = {k: np.array(f[k]) for k in f.files if k.startswith("mask")}
        if spec.pop("format", None) != NPZ_FORMAT:
            raise ValueError("not format " + repr(NPZ_FORMAT))
        _check_architecture(spec)
    except (AttributeError, KeyError, TypeError, ValueError, OSError, EOFError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(path, f"not a network saved by bpcore ({exc})") from None
    expect = _expected_tensors(spec)
    total = sum(int(np.prod(shape)) for name, (shape, _) in expect.items()
                if not name.endswith(".mask"))
    if flat.ndim != 1 or flat.size != total:
        raise CheckpointError(path, f"flat_params: expected {total} values for the layers the "
                                    f"spec lists, got shape {flat.shape}")
    tensors, offset = {}, 0
    for name, (shape, dtype) in expect.items():
        if name.endswith(".mask"):
            key = f"mask{name.split('.')[1]}"
            if key not in masks or masks[key].shape != tuple(shape):
                raise CheckpointError(path, f"{key}: expected a mask of shape {tuple(shape)}, "
                                            f"got {masks[key].shape if key in masks else 'none'}")
            tensors[name] = masks[key]
            continue
        size = int(np.prod(shape))
        tensors[name] = flat[offset:offset + size].reshape(shape).astype(dtype)
        offset += size
    return spec, tensors
