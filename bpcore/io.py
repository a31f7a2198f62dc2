"""save and load: a network's layers and weights in one NumPy .npz file.

The file holds a JSON description of the layers (and, for an MLP, its constructor arguments),
the flat parameter buffer and any masks. It is read with ``allow_pickle=False``: loading a file
never runs code from it.
"""
import json
import os

import numpy as np

from bpcore.layers import ACTIVATIONS, Dense, Sequential

__all__ = ["save", "load"]

FORMAT = "bpcore-network-1"


def _describe(model):
    layers = []
    for m in model.layers:
        if isinstance(m, Dense):
            layers.append({"type": "dense", "fan_in": m.fan_in, "fan_out": m.fan_out,
                           "mask": m.mask is not None})
        else:
            layers.append({"type": m.name})
    spec = {"format": FORMAT, "dtype": model.dtype.name, "layers": layers}
    from bpcore.model import MLP

    if isinstance(model, MLP):
        spec["mlp"] = {"sizes": model.sizes, "activation": model.activation,
                       "output_activation": model.output_activation}
    return spec


def save(model, path):
    """Write model (a Sequential or MLP) to path (.npz is appended if missing)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a bpcore Sequential or MLP, got {type(model).__name__}")
    masks = {f"mask{i}": m.mask for i, m in enumerate(model.layers)
             if isinstance(m, Dense) and m.mask is not None}
    np.savez(path, spec=np.array(json.dumps(_describe(model))),
             flat_params=model.flat_params, **masks)


def load(path):
    """The network saved at path, with its weights (a new object)."""
    from bpcore.model import MLP

    if not os.path.exists(path) and os.path.exists(str(path) + ".npz"):
        path = str(path) + ".npz"
    with np.load(path, allow_pickle=False) as f:
        try:
            spec = json.loads(str(f["spec"]))
        except (KeyError, ValueError):
            raise ValueError(f"path: expected a file written by bpcore.save, got {path!r}") from None
        if spec.get("format") != FORMAT:
            raise ValueError(f"path: expected format {FORMAT!r}, got {spec.get('format')!r}")
        flat = f["flat_params"]
        masks = {k: f[k] for k in f.files if k.startswith("mask")}
    dtype = spec["dtype"]
    if "mlp" in spec and not masks:
        model = MLP(spec["mlp"]["sizes"], activation=spec["mlp"]["activation"],
                    output_activation=spec["mlp"]["output_activation"], dtype=dtype, seed=0)
    else:
        layers = []
        for i, d in enumerate(spec["layers"]):
            if d["type"] == "dense":
                layers.append(Dense(d["fan_in"], d["fan_out"], mask=masks.get(f"mask{i}"),
                                    dtype=dtype, seed=0))
            elif d["type"] in ACTIVATIONS:
                layers.append(ACTIVATIONS[d["type"]]())
            else:
                raise ValueError(f"path: unknown layer type {d['type']!r} in {path!r}")
        model = Sequential(*layers)
    if flat.shape != model.flat_params.shape:
        raise ValueError(f"path: expected {model.flat_params.size} parameters, got {flat.size}")
    model.flat_params[...] = flat
    return model
