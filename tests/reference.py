"""A plain NumPy float64 MLP: the independent reference bpcore's kernels are checked against.

Written from the math in DESIGN.md, sharing no code with bpcore: forward, losses, backward and
the SGD update, each the textbook formula.
"""
import numpy as np


def act_forward(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    return z.copy()


def act_grad(name, z):
    """f'(z), taken from the pre-activation (bpcore takes it from the output: independent)."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    return np.ones_like(z)


def loss_and_grad(kind, out, target, reduction="mean"):
    """(loss, dloss/dout) for kind "mse" or "xent" (target: labels or probability rows)."""
    n = out.shape[0]
    if kind == "mse":
        d = out - target
        if reduction == "mean":
            return (d ** 2).mean(), 2 * d / d.size
        if reduction == "sum":
            return (d ** 2).sum(), 2 * d
        return 0.5 * (d ** 2).sum(), d
    if target.ndim == 1:
        t = np.zeros_like(out)
        t[np.arange(n), target] = 1
    else:
        t = target
    shifted = out - out.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    loss_rows = -(t * logp).sum(axis=1)
    grad = p * t.sum(axis=1, keepdims=True) - t
    if reduction == "mean":
        return loss_rows.mean(), grad / n
    return loss_rows.sum(), grad


class RefMLP:
    def __init__(self, weights, biases, acts):
        self.W = [np.array(w, dtype=np.float64) for w in weights]
        self.b = [np.array(b, dtype=np.float64) for b in biases]
        self.acts = list(acts)  # one per layer, "identity" for linear
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.masks = [None] * len(self.W)

    def forward(self, X):
        self.inputs, self.zs = [], []
        a = np.asarray(X, dtype=np.float64)
        for W, b, act in zip(self.W, self.b, self.acts):
            self.inputs.append(a)
            z = a @ W + b
            self.zs.append(z)
            a = act_forward(act, z)
        return a

    def backward(self, dout):
        """Gradients (dW list, db list, dX) of the last forward."""
        dWs, dbs = [None] * len(self.W), [None] * len(self.W)
        g = dout
        for i in reversed(range(len(self.W))):
            dz = g * act_grad(self.acts[i], self.zs[i])
            dWs[i] = self.inputs[i].T @ dz
            if self.masks[i] is not None:
                dWs[i] = dWs[i] * self.masks[i]
            dbs[i] = dz.sum(axis=0)
            g = dz @ self.W[i].T
        return dWs, dbs, g

    def sgd_step(self, dWs, dbs, lr, momentum=0.0, nesterov=False, weight_decay=0.0, decay=0.0):
        for params, vels, grads in ((self.W, self.vW, dWs), (self.b, self.vb, dbs)):
            for i in range(len(params)):
                g = grads[i] + weight_decay * params[i]
                if momentum:
                    vels[i] = momentum * vels[i] - lr * g
                    step = momentum * vels[i] - lr * g if nesterov else vels[i]
                else:
                    step = -lr * g
                params[i] = (params[i] + step) * (1 - decay)

    def train_step(self, X, target, loss_kind, reduction="mean", **sgd):
        out = self.forward(X)
        loss, dout = loss_and_grad(loss_kind, out, target, reduction)
        dWs, dbs, _ = self.backward(dout)
        self.sgd_step(dWs, dbs, **sgd)
        return loss


def from_bpcore(model):
    """A RefMLP holding a copy of a bpcore Sequential's weights, activations and masks."""
    import bpcore

    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    acts = []
    for i, m in enumerate(model.layers):
        if isinstance(m, bpcore.Dense):
            nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
            is_act = nxt is not None and not isinstance(nxt, bpcore.Dense)
            acts.append(type(nxt).__name__.lower() if is_act else "identity")
    ref = RefMLP([m.W for m in dense], [m.b for m in dense], acts)
    ref.masks = [None if m.mask is None else np.array(m.mask, np.float64) for m in dense]
    return ref
