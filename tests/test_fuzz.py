"""Property-based fuzz tests (hypothesis) of every public entry point of bpcore.

Every property draws random arguments -- shapes with 0 and 1 rows or columns, every NumPy
dtype family (bool, signed and unsigned ints, float16/32/64, big-endian, long double, complex,
object, strings), Fortran-ordered, strided, negative-stride, broadcast, read-only and
memory-mapped arrays, lists and tuples, scipy.sparse matrices, NaN/inf, huge and subnormal
values, wrong label types, junk hyperparameters -- and checks that each call either

* works and matches a NumPy reference written here (float64 forward, backward, losses and
  updates; the bound is rtol * (the same sums over absolute values), rtol 1e-10 for float64
  and 1e-4 for float32, propagated through the layers), or
* raises ValueError or TypeError (or a subclass: bpcore.FileFormatError, CheckpointError)
  whose message names the argument at fault ("X:", "target:", "batch_size:", "lr:" ...).

Any other exception (AttributeError, IndexError, KeyError, OverflowError, MemoryError, ...)
or a message that does not name the argument fails the property.

Crash safety. The riskiest cases -- native calls on odd arrays (strided, Fortran,
negative-stride, broadcast, read-only, memory-mapped, big-endian, huge shapes), huge layer
sizes, ``set_num_threads``/``num_threads`` (with a fork), random and corrupted IDX files and
checkpoints, odd path arguments -- run only in child processes (``test_in_subprocess[...]``):
each child runs one hypothesis property over a batch of cases under a memory limit, so a
segfault (negative return code), an abort, a hang (timeout) or a runaway allocation is a test
failure, not a dead run. The child writes each case before running it; a crash report shows
the last one and faulthandler's traceback.

How many cases. Profiles live in tests/conftest.py:

    pytest tests/test_fuzz.py                 # "ci": ~30 examples per property, derandomized
                                              #   (the same cases every run), under a minute
    pytest tests/test_fuzz.py --long          # "long": 1500 examples per property, fresh seed
    pytest tests/test_fuzz.py --hypothesis-show-statistics   # hypothesis' per-test counts

At the end of the module a "fuzz cases" table (examples tried per property, children
included) is written to the terminal; ``BPCORE_FUZZ_REPORT=path.json`` also writes it as JSON.

Properties that fail on the current bpcore are marked ``xfail(strict=True)`` with the finding
as the reason (``@finding(...)``, or ``_subprocess_param(name, finding)`` for a child): fixing
the library turns them into XPASS (a failure) -- then drop the mark. A marked property does not
shrink (nobody sees an xfail's example); without the mark hypothesis prints the minimal one.
A --long run may also fail an unmarked property on a finding its marked twin already records
(risky_odd_arrays runs check_losses on every array form, so it meets test_losses' finding).

Where a valid step legitimately overflows (finite but huge data), the documented
bpcore.NonFiniteError is accepted; everywhere else only ValueError/TypeError are.
"""
import collections
import dataclasses
import functools
import gzip
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import Phase, event, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import bpcore  # noqa: E402

# the reference and the strategies cast and square huge values on purpose; np.asmatrix is
# one of the input forms
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning:.*test_fuzz"),
              pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")]

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
INT_MAX = 2**31 - 1
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
ACTS = ("identity", "relu", "sigmoid", "tanh")
# every activation MLP takes by name (the fuzzed numerics above cover ACTS)
MLP_ACTS = ACTS + ("leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus")
ACT_CLASSES = {"identity": bpcore.Identity, "relu": bpcore.ReLU, "sigmoid": bpcore.Sigmoid,
               "tanh": bpcore.Tanh}
MODEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# examples tried per property (children's counts are added when they report)
CASES = collections.Counter()


def examples(factor):
    """A settings decorator with `factor` times the profile's examples (at least 5)."""
    return settings(max_examples=max(5, int(settings.default.max_examples * factor)))


def finding(reason):
    """Mark a property that fails on the current bpcore: xfail(strict=True) with the finding as
    the reason, and no shrinking (nobody sees an xfail's example; remove the mark to get the
    minimal one printed -- and, once bpcore is fixed, to turn XPASS back into a pass)."""
    def mark(test):
        test = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])(test)
        return pytest.mark.xfail(reason=f"finding: {reason}", strict=True)(test)
    return mark


def counted(fn):
    """Count each example the property runs (for the end-of-module table)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        CASES[fn.__name__] += 1
        _log_case(fn.__name__, kwargs)
        return fn(*args, **kwargs)
    return wrapper


_CASE_LOG = None  # in a child: the file that holds the case being run


def _log_case(name, kwargs):
    if _CASE_LOG is None:
        return
    with open(_CASE_LOG, "w") as fh:
        fh.write(f"{name} case {CASES[name]}\n")


def _log_detail(text):
    """In a child, append `text` to the current case's log (written before a risky call)."""
    if _CASE_LOG is not None:
        with open(_CASE_LOG, "a") as fh:
            fh.write(text[:4000] + "\n")


class _CaseReport:
    """Writes the "fuzz cases" table in pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter):
        if not CASES:
            return
        tr = terminalreporter
        tr.section("fuzz cases (examples tried per property, children included)", sep="-")
        for name, n in sorted(CASES.items()):
            tr.write_line(f"  {name:<48}{n:>8}")
        tr.write_line(f"  {'total':<48}{sum(CASES.values()):>8}")
        out = os.environ.get("BPCORE_FUZZ_REPORT")
        if out:
            with open(out, "w") as fh:
                json.dump(dict(CASES), fh, indent=1, sort_keys=True)


@pytest.fixture(scope="module", autouse=True)
def _report_cases(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin("bpcore-fuzz-cases"):
        manager.register(_CaseReport(), "bpcore-fuzz-cases")
    yield


# ---------------------------------------------------------------------------------------------
# outcomes and error messages

def attempt(fn, *args, **kwargs):
    """(True, result) or (False, exception)."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- the properties judge every exception
        return False, exc


def _names_in(message, names):
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message)
               for n in names)


def assert_named_error(exc, names, what, extra=(ValueError, TypeError)):
    """exc is a ValueError/TypeError (or one of `extra`) naming one of `names`."""
    __tracebackhide__ = True
    if not isinstance(exc, extra):
        raise AssertionError(f"{what}: raised {type(exc).__name__} (expected ValueError or "
                             f"TypeError naming {' or '.join(names)}): {exc!r}\n"
                             + "".join(traceback.format_exception(exc)[-6:]))
    if not _names_in(str(exc), names):
        raise AssertionError(f"{what}: raised {type(exc).__name__} whose message does not name "
                             f"{' or '.join(names)}: {str(exc)!r}")


def judge(ok, res, valid, names, what, extra=(ValueError, TypeError)):
    """valid True: must work; False: must raise naming `names`; None: either (an error still
    has to name them). Returns whether it worked."""
    __tracebackhide__ = True
    if ok:
        if valid is False:
            raise AssertionError(f"{what}: accepted invalid input (expected an error naming "
                                 f"{' or '.join(names)}), returned {_short(res)}")
        return True
    if valid is True:
        raise AssertionError(f"{what}: valid input refused with {type(res).__name__}: {res}\n"
                             + "".join(traceback.format_exception(res)[-6:]))
    assert_named_error(res, names, what, extra)
    return False


def _short(x):
    r = repr(x)
    return r if len(r) < 300 else r[:300] + "..."


# ---------------------------------------------------------------------------------------------
# arrays in every form

@dataclasses.dataclass
class Arg:
    """A drawn argument: the object passed, its logical values (None when NumPy cannot read
    it as a real numeric array), and how it was made (its repr is code-like)."""
    obj: object
    values: object  # np.ndarray (the numbers, in the drawn dtype) or None
    code: str
    form: str = "c"

    def __repr__(self):
        return self.code


def _array_code(a):
    if a.ndim == 0:
        return f"np.array({a.item()!r}, dtype={a.dtype.str!r})"
    return f"np.array({a.tolist()!r}, dtype={a.dtype.str!r})"


REAL_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", ">f4", ">f8", ">i4", "longdouble"]
JUNK_DTYPES = ["complex64", "complex128", "object", "U3", "S2", "datetime64[s]", "timedelta64[s]"]


def _elements(dtype, magnitude):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return st.booleans()
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if magnitude in ("small", "tiny"):
            return st.integers(max(info.min, -5), min(info.max, 5))
        return st.integers(int(info.min), int(info.max))
    width = {2: 16, 4: 32}.get(dt.itemsize, 64)
    ftype = {16: np.float16, 32: np.float32, 64: np.float64}[width]
    if magnitude == "small":
        return st.floats(-4, 4, width=width)
    if magnitude == "tiny":  # subnormals and the smallest normals
        top = float(np.finfo(ftype).tiny)
        return st.floats(-top, top, width=width)
    if magnitude == "huge":
        top = float(np.finfo(ftype).max)
        low = float(ftype(top / 1e6)) if width > 16 else 1024.0
        return st.floats(low, top, width=width).flatmap(lambda v: st.sampled_from([v, -v]))
    if magnitude == "nonfinite":
        return st.one_of(st.floats(-4, 4, width=width),
                         st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.floats(allow_nan=False, allow_infinity=False, width=width)  # "wide"


@st.composite
def numbers_array(draw, shape, dtype=None, magnitude=None, finite_only=False):
    """A C-contiguous array of shape and a real numeric dtype."""
    dtype = dtype or draw(st.sampled_from(REAL_DTYPES))
    mags = ["small", "wide", "huge", "tiny"] + ([] if finite_only else ["nonfinite"])
    magnitude = magnitude or draw(st.sampled_from(mags).filter(lambda m: True))
    dt = np.dtype(dtype)
    native = dt.newbyteorder("=") if dt.kind in "iuf" else dt
    if native == np.dtype(np.longdouble):
        native = np.dtype(np.float64)
    a = draw(hnp.arrays(native, shape, elements=_elements(native, magnitude)))
    return a.astype(dt)


SAFE_FORMS = ("c", "c", "c", "list", "tuple", "matrix", "sparse", "other_dtype")
RISKY_FORMS = ("fortran", "strided", "negative", "readonly", "memmap", "broadcast",
               "transposed", "bigendian", "readonly_exact")
ALL_FORMS = SAFE_FORMS + RISKY_FORMS

_MEMMAP_DIR = None


def _memmap_dir():
    """A temporary folder for memory-mapped arrays and files, removed at exit."""
    global _MEMMAP_DIR
    if _MEMMAP_DIR is None:
        import atexit
        import shutil
        _MEMMAP_DIR = tempfile.mkdtemp(prefix="bpcore-fuzz-")
        atexit.register(shutil.rmtree, _MEMMAP_DIR, ignore_errors=True)
    return _MEMMAP_DIR


def in_form(a, form, draw):
    """(object, values, code): the array a passed in `form` (values may differ from a for the
    forms that change them, e.g. broadcast)."""
    code = _array_code(a)
    if form in ("list", "tuple"):
        obj = a.tolist()
        if form == "tuple" and isinstance(obj, list):
            obj = tuple(tuple(r) if isinstance(r, list) else r for r in obj)
        try:  # a list keeps neither an empty array's shape nor its dtype: NumPy reads it anew
            vals = np.asarray(obj)
        except (ValueError, TypeError, OverflowError):
            vals = None
        if vals is not None and vals.dtype.kind not in "biuf":
            vals = None
        code = f"{code}.tolist()" if form == "list" else f"tuple(map(tuple, {code}.tolist()))"
        return obj, vals, code
    if form == "matrix" and a.ndim == 2:
        return np.asmatrix(a), a, f"np.asmatrix({code})"
    if form == "sparse" and a.ndim == 2 and a.dtype.kind in "biuf" and a.dtype.itemsize <= 8 \
            and a.dtype.isnative and a.dtype != np.float16:
        import scipy.sparse
        return scipy.sparse.csr_matrix(a), None, f"scipy.sparse.csr_matrix({code})"
    if form == "fortran":
        return np.asfortranarray(a), a, f"np.asfortranarray({code})"
    if form == "transposed" and a.ndim == 2:
        return np.ascontiguousarray(a.T).T, a, f"np.ascontiguousarray({code}.T).T"
    if form == "strided" and a.ndim >= 1:
        big = np.zeros((2 * a.shape[0] + 1,) + tuple(3 * s + 2 for s in a.shape[1:]), a.dtype)
        idx = (slice(1, None, 2),) + tuple(slice(2, None, 3) for _ in a.shape[1:])
        big[idx] = a
        return big[idx], a, f"(strided view of {code})"
    if form == "negative" and a.ndim >= 1:
        rev = tuple(slice(None, None, -1) for _ in a.shape)
        return np.ascontiguousarray(a[rev])[rev], a, f"np.ascontiguousarray({code}[::-1, ::-1])[::-1, ::-1]"
    if form in ("readonly", "readonly_exact"):
        b = a.copy()
        b.flags.writeable = False
        return b, a, f"(read-only {code})"
    if form == "memmap" and a.size and a.dtype.kind in "biuf":
        path = os.path.join(_memmap_dir(), f"m{draw(st.integers(0, 10**9))}.dat")
        mm = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        mm[...] = a
        mm.flush()
        del mm
        mode = draw(st.sampled_from(["r", "r+", "c"]))
        return np.memmap(path, dtype=a.dtype, mode=mode, shape=a.shape), a, \
            f"np.memmap(<file holding {code}>, mode={mode!r})"
    if form == "broadcast" and a.ndim == 2 and a.shape[0] >= 1:
        b = np.broadcast_to(a[:1], a.shape)
        return b, np.array(b), f"np.broadcast_to({_array_code(a[:1])}, {a.shape})"
    if form == "bigendian" and a.dtype.kind in "iuf" and a.dtype.itemsize > 1:
        b = a.astype(a.dtype.newbyteorder(">" if a.dtype.byteorder in "=<" else "<"))
        return b, a, f"{code}.astype({b.dtype.str!r})"
    return np.array(a, order="C"), a, code  # (ascontiguousarray makes a 0-d array 1-d)


@st.composite
def matrices(draw, rows, cols, forms, dtype=None, magnitude=None, label="array", prefer=None,
             sparse_ok=False):
    """Arg for a (rows, cols) matrix in one of `forms`, sometimes of a junk kind or ndim;
    `prefer` (a model's dtype) is drawn half the time, so that arrays the engine takes as they
    are (C-contiguous, the model's dtype) reach the native code directly. sparse_ok: a
    scipy.sparse form is valid input (a model's X), with the dense values."""
    if dtype is None and prefer is not None and draw(st.booleans()):
        dtype = np.dtype(prefer).name
    shape_kind = draw(st.sampled_from(["ok"] * 10 + ["ndim", "junk", "ragged", "none", "huge"]))
    if shape_kind == "none":
        obj = draw(st.sampled_from([None, "abc", 3.0, {"a": 1}, object()]))
        return Arg(obj, None, repr(obj) if not type(obj) is object else "object()", "junk")
    if shape_kind == "ragged":
        return Arg([[1.0, 2.0], [3.0]], None, "[[1.0, 2.0], [3.0]]", "junk")
    if shape_kind == "huge":
        if "broadcast" not in forms:
            shape_kind = "ok"
        else:
            shape = draw(st.sampled_from([(2**31, cols), (1, 2**31), (2**32 + 1, cols),
                                          (2**31, 2**20)]))
            b = np.broadcast_to(np.float32(0.5), shape)
            return Arg(b, None, f"np.broadcast_to(np.float32(0.5), {shape})", "huge")
    if shape_kind == "junk":
        dt = np.dtype(draw(st.sampled_from(JUNK_DTYPES)))
        a = np.zeros((rows, cols), dt)
        return Arg(a, None, f"np.zeros({(rows, cols)}, {dt.str!r})", "junk")
    if shape_kind == "ndim":
        shape = draw(st.sampled_from([(), (cols,), (rows, cols, 1), (1, rows, cols), (0,)]))
        a = draw(numbers_array(shape, dtype=dtype, magnitude="small"))
        obj, vals, code = in_form(a, draw(st.sampled_from(["c", "list"])), draw)
        return Arg(obj, vals, code, "ndim")
    a = draw(numbers_array((rows, cols), dtype=dtype, magnitude=magnitude))
    form = draw(st.sampled_from(forms))
    if form == "other_dtype":
        a = a.astype(draw(st.sampled_from(REAL_DTYPES)))
        form = "c"
    obj, vals, code = in_form(a, form, draw)
    if sparse_ok and form == "sparse" and vals is None and not isinstance(obj, np.ndarray):
        vals = a
    return Arg(obj, vals, code, form)


def matrix_validity(arg, cols, dtype, allow_empty=False):
    """(valid, values as dtype): what as_matrix's documented rules say of arg."""
    v = arg.values
    if v is None or not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
        return False, None
    if v.ndim != 2 or v.shape[1] != cols or (v.shape[0] == 0 and not allow_empty):
        return False, None
    with np.errstate(over="ignore", invalid="ignore"):
        conv = v.astype(dtype)
    if not np.isfinite(conv).all():
        return False, None
    return True, conv


# ---------------------------------------------------------------------------------------------
# networks (drawn as specs, so a failing example prints code)

@dataclasses.dataclass
class NetSpec:
    kind: str             # "mlp" or "seq"
    args: dict
    layers: tuple = ()    # for "seq": ("dense", fi, fo, mask, init, seed) / ("act", name)

    def build(self):
        if self.kind == "mlp":
            return bpcore.MLP(**self.args)
        layers = []
        for layer in self.layers:
            if layer[0] == "dense":
                _, fi, fo, mask, init, seed = layer
                layers.append(bpcore.Dense(fi, fo, mask=None if mask is None else np.array(mask),
                                           init=init, dtype=self.args["dtype"], seed=seed))
            else:
                layers.append(ACT_CLASSES[layer[1]]())
        return bpcore.Sequential(*layers)

    def __repr__(self):
        if self.kind == "mlp":
            return "bpcore.MLP(" + ", ".join(f"{k}={v!r}" for k, v in self.args.items()) + ")"
        parts = []
        for layer in self.layers:
            if layer[0] == "dense":
                _, fi, fo, mask, init, seed = layer
                m = "" if mask is None else f", mask=np.array({mask!r})"
                parts.append(f"bpcore.Dense({fi}, {fo}{m}, init={init!r}, "
                             f"dtype={self.args['dtype']!r}, seed={seed})")
            else:
                parts.append(f"bpcore.{ACT_CLASSES[layer[1]].__name__}()")
        return "bpcore.Sequential(" + ", ".join(parts) + ")"


@st.composite
def net_specs(draw, dtypes=("float32", "float64"), engine_only=False, max_width=5):
    dtype = draw(st.sampled_from(dtypes))
    widths = draw(st.lists(st.integers(1, max_width), min_size=2, max_size=4))
    if engine_only or draw(st.booleans()):
        return NetSpec("mlp", {"sizes": widths, "activation": draw(st.sampled_from(ACTS)),
                               "output_activation": draw(st.sampled_from(ACTS + (None,))),
                               "dtype": dtype, "seed": draw(st.integers(0, 2**32)),
                               "init": draw(st.sampled_from(["auto", "he", "glorot", 0.5, 2.0]))})
    layers = []
    if draw(st.booleans()):
        layers.append(("act", draw(st.sampled_from(ACTS))))
    for fi, fo in zip(widths, widths[1:]):
        mask = None
        if draw(st.booleans()):
            mask = draw(st.lists(st.lists(st.integers(0, 1), min_size=fo, max_size=fo),
                                 min_size=fi, max_size=fi))
        layers.append(("dense", fi, fo, mask, draw(st.sampled_from(["glorot", "he", 0.5, 2.0])),
                       draw(st.integers(0, 2**32))))
        for _ in range(draw(st.integers(0, 2))):
            layers.append(("act", draw(st.sampled_from(ACTS))))
    return NetSpec("seq", {"dtype": dtype}, tuple(layers))


# ---------------------------------------------------------------------------------------------
# the NumPy reference (float64) with error bounds

def act_forward(name, Z):
    with np.errstate(over="ignore"):
        if name == "relu":
            return np.maximum(Z, 0.0)
        if name == "sigmoid":
            return 1.0 / (1.0 + np.exp(-Z))
        if name == "tanh":
            return np.tanh(Z)
    return Z.copy()


def act_derivative(name, A):
    if name == "relu":
        return (A > 0).astype(np.float64)
    if name == "sigmoid":
        return A * (1.0 - A)
    if name == "tanh":
        return 1.0 - A * A
    return np.ones_like(A)


def act_derivative_bound(name, A, E, rtol):
    """Bound on the error of f'(A) computed from an A known to within E."""
    if name == "sigmoid":
        return E * (1 + 2 * np.abs(A) + E) + rtol * np.abs(A) * (1 + np.abs(A))
    if name == "tanh":
        return E * (2 * np.abs(A) + E) + rtol * (1 + A * A)
    return np.zeros_like(A)


class Reference:
    """Forward pass of `layers` on X in float64, with a bound on how far a correct
    implementation in `dtype` may be from it, and the backward pass likewise."""

    def __init__(self, layers, X, dtype):
        dtype = np.dtype(dtype)
        self.rtol, self.tiny = RTOL[dtype], float(np.finfo(dtype).tiny)
        self.big = float(np.finfo(dtype).max) / 16
        A = np.asarray(X, np.float64)
        E = np.zeros_like(A)
        self.trace, self.ambiguous = [], False
        rtol, tiny = self.rtol, self.tiny
        for m in layers:
            if isinstance(m, bpcore.Dense):
                W, b = m.W.astype(np.float64), m.b.astype(np.float64)
                with np.errstate(over="ignore", invalid="ignore"):
                    Z = A @ W + b
                    S = np.abs(A) @ np.abs(W) + np.abs(b)
                    E2 = E @ np.abs(W) + rtol * S + (A.shape[1] + 1) * tiny * (S > 0)
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    Z = act_forward(m.name, A)
                    if m.name == "relu":
                        self.ambiguous |= bool(np.any((E > 0) & (np.abs(A) <= E)))
                    E2 = E + rtol * np.abs(Z) + tiny * ((E > 0) | ((Z != 0) & (np.abs(Z) < tiny)))
            self.trace.append((m, A, E, Z, E2))
            A, E = Z, E2
        self.out, self.err = A, E
        with np.errstate(over="ignore", invalid="ignore"):
            self.row_ok = np.ones(self.out.shape[0], bool)
            for _, A_in, E_in, _, _ in self.trace:
                # no partial sum may overflow: the sums of magnitudes (err / rtol) stay in range
                self.row_ok &= np.all(np.isfinite(A_in) & (np.abs(A_in) + E_in / self.rtol
                                                           < self.big), axis=1)
            self.row_ok &= np.all(np.isfinite(self.out) & (np.abs(self.out) + self.err / self.rtol
                                                           < self.big), axis=1)

    def check_output(self, out, what):
        """out (the implementation's) within the bound, on rows where nothing overflows."""
        __tracebackhide__ = True
        ok = self.row_ok
        if not ok.any():
            event("reference: every row overflows; output not compared")
            return
        diff = np.abs(out[ok].astype(np.float64) - self.out[ok])
        bad = ~(diff <= self.err[ok])
        if bad.any():
            i = np.argwhere(bad)[0]
            raise AssertionError(f"{what}: differs from the NumPy reference at {tuple(i)}: "
                                 f"{out[ok][tuple(i)]!r} vs {self.out[ok][tuple(i)]!r} "
                                 f"(bound {self.err[ok][tuple(i)]:.3g})")

    def backward(self, G):
        """({id(dense): (dW, EdW, db, Edb)}, dX, EdX) for dloss/doutput G (exact)."""
        rtol, tiny = self.rtol, self.tiny
        G = np.asarray(G, np.float64)
        EG = np.zeros_like(G)
        grads = {}
        with np.errstate(over="ignore", invalid="ignore"):
            for m, A_in, E_in, A_out, E_out in reversed(self.trace):
                n = G.shape[0]
                if isinstance(m, bpcore.Dense):
                    W = m.W.astype(np.float64)
                    dW = A_in.T @ G
                    EdW = (E_in.T @ np.abs(G) + np.abs(A_in).T @ EG + E_in.T @ EG
                           + rtol * (np.abs(A_in).T @ np.abs(G)) + (n + 1) * tiny)
                    if m.mask is not None:
                        dW = dW * m.mask
                        EdW = EdW * m.mask
                    db = G.sum(0)
                    Edb = EG.sum(0) + rtol * np.abs(G).sum(0) + (n + 1) * tiny
                    grads[id(m)] = (dW, EdW, db, Edb)
                    G, EG = G @ W.T, EG @ np.abs(W).T + rtol * (np.abs(G) @ np.abs(W).T) \
                        + (W.shape[1] + 1) * tiny
                else:
                    d = act_derivative(m.name, A_out)
                    Ed = act_derivative_bound(m.name, A_out, E_out, rtol)
                    G2 = G * d
                    EG = EG * (np.abs(d) + Ed) + np.abs(G) * Ed + rtol * np.abs(G2) + tiny
                    G = G2
        return grads, G, EG


def check_close(got, want, bound, what, dtype=None):
    """got within bound of want, where want is finite (and, given the dtype the result is
    computed in, where no partial sum can overflow: the bound is rtol times the sum of the
    terms' magnitudes, so bound / rtol below the dtype's max; beyond it an infinity is right)."""
    __tracebackhide__ = True
    got = np.asarray(got, np.float64)
    want, bound = np.asarray(want, np.float64), np.asarray(bound, np.float64)  # scalars too
    with np.errstate(invalid="ignore", over="ignore"):
        fine = np.isfinite(want) & np.isfinite(bound)
        if dtype is not None:
            fine &= np.abs(want) + bound / RTOL[np.dtype(dtype)] < float(np.finfo(dtype).max)
        diff = np.abs(got - want)
        bad = fine & ~(diff <= bound)
    if bad.any():
        i = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        raise AssertionError(f"{what}: differs from the NumPy reference at {i}: "
                             f"{got[i]!r} vs {want[i]!r} (bound {bound[i]:.3g})")


def ref_loss(kind, reduction, Y, T, dtype):
    """(loss, bound, dloss/dY, bound) in float64 for output Y and target T (as the loss would
    read them: T (n, c) values, or (n,) integer labels for cross-entropy)."""
    rtol, tiny = RTOL[np.dtype(dtype)], float(np.finfo(dtype).tiny)
    Y = np.asarray(Y, np.float64)
    n, c = Y.shape
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "mse":
            T = np.asarray(T, np.float64).reshape(n, c)
            D = Y - T
            total = float((D * D).sum())
            scale = {"mean": 1.0 / (n * c), "sum": 1.0, "half_sum": 0.5}[reduction]
            G = 2 * scale * D
            loss = scale * total
            return (loss, rtol * abs(loss) + tiny, G,
                    rtol * 2 * scale * (np.abs(Y) + np.abs(T)) + tiny)
        mx = Y.max(axis=1, keepdims=True)
        e = np.exp(Y - mx)
        s = e.sum(axis=1, keepdims=True)
        lse = mx + np.log(s)
        P = e / s
        if T.ndim == 1:
            T = np.eye(c)[np.asarray(T, np.intp)]
        T = np.asarray(T, np.float64)
        rows_T = T.sum(axis=1, keepdims=True)
        per = (T * (lse - Y)).sum(axis=1)
        per_scale = (np.abs(T) * (np.abs(lse) + np.abs(Y) + 1)).sum(axis=1)
        scale = 1.0 / n if reduction == "mean" else 1.0
        G = scale * (P * rows_T - T)
        loss = scale * float(per.sum())
        return (loss, rtol * scale * float(per_scale.sum()) + tiny, G,
                rtol * scale * (P * np.abs(rows_T) + np.abs(T) + 1e-30) + tiny)


# ---------------------------------------------------------------------------------------------
# junk values for scalar arguments

JUNK_SCALARS = st.sampled_from([None, "1", "abc", b"1", [1], (1, 2), {"lr": 1}, 1j, object(),
                                np.array([1.0, 2.0]), np.float64("nan"), float("inf"),
                                -float("inf"), True, False])


def real_values(low=None, high=None):
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-2, 2),
        st.integers(-3, 10),
        st.sampled_from([0, 0.0, 1, 1e-300, 1e300, 1e39, -0.0, 2**31, 2**64, -1]),
        st.builds(np.float32, st.floats(-2, 2, width=32)),
        st.builds(np.int64, st.integers(-3, 10)),
        JUNK_SCALARS)


def int_values():
    return st.one_of(
        st.integers(-3, 10), st.integers(-2**70, 2**70),
        st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -2**63]),
        st.builds(np.int64, st.integers(-3, 10)), st.builds(np.uint8, st.integers(0, 10)),
        st.floats(-3, 10), st.sampled_from([1.0, 2.0, np.float64(3.0)]), JUNK_SCALARS)


def is_int(v, low=None, high=INT_MAX):
    import numbers
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        return False
    return (low is None or v >= low) and (high is None or v <= high)


def is_real(v):
    import numbers
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, numbers.Real)


def real_in(v, low=None, high=None, low_open=False, high_open=False, dtype=None):
    """True/False when v certainly is/isn't a finite real in the range (and finite in dtype)."""
    if not is_real(v):
        return False
    f = float(v)
    if not math.isfinite(f):
        return False
    if low is not None and (f <= low if low_open else f < low):
        return False
    if high is not None and (f >= high if high_open else f > high):
        return False
    if dtype is not None:
        with np.errstate(over="ignore"):
            if not np.isfinite(np.dtype(dtype).type(f)):
                return False
    return True


# =============================================================================================
# properties: construction
# =============================================================================================

def _size_values():
    return st.one_of(st.integers(1, 6), int_values())


@given(data=st.data())
@counted
def test_mlp_construction(data):
    """MLP(sizes, activation, output_activation, dtype, seed, init): builds what it says, the
    same weights for the same seed, or raises naming the bad argument."""
    bad = []
    sizes_kind = data.draw(st.sampled_from(["ok"] * 4 + ["junk", "short", "iter", "array"]))
    if sizes_kind == "ok":
        sizes = data.draw(st.lists(st.integers(1, 6), min_size=2, max_size=4), label="sizes")
        if data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(sizes) - 1))
            sizes[i] = data.draw(_size_values(), label="sizes[i]")
        if not all(is_int(s, 1) for s in sizes):
            bad.append("sizes")
    elif sizes_kind == "short":
        sizes = data.draw(st.lists(st.integers(1, 6), max_size=1), label="sizes")
        bad.append("sizes")
    elif sizes_kind == "array":
        sizes = np.array(data.draw(st.lists(st.integers(1, 6), min_size=2, max_size=3)),
                         dtype=data.draw(st.sampled_from(["int64", "uint8", "float64"])))
        note(f"sizes = {sizes!r}")
        if sizes.dtype.kind == "f":
            bad.append("sizes")
    elif sizes_kind == "iter":
        sizes = iter([2, 3])
    else:
        sizes = data.draw(JUNK_SCALARS, label="sizes")
        # the junk scalars hold one valid list of sizes, (1, 2)
        if not (isinstance(sizes, (list, tuple)) and len(sizes) >= 2
                and all(is_int(s, 1) for s in sizes)):
            bad.append("sizes")
    activation = data.draw(st.one_of(st.sampled_from(MLP_ACTS), st.sampled_from(
        ["ReLU", "softmax", "", None, 1, "relu ", "swish"])), label="activation")
    if activation not in MLP_ACTS:
        bad.append("activation")
    output_activation = data.draw(st.one_of(st.sampled_from(MLP_ACTS + ("softmax", None)),
                                            st.sampled_from(["Softmax", "", 0, "Sigmoid"])),
                                  label="output_activation")
    if output_activation not in MLP_ACTS + ("softmax", None):
        bad.append("output_activation")
    dtype = data.draw(st.one_of(
        st.sampled_from(["float32", "float64", np.float32, np.float64, "f4", "<f8", ">f4",
                         np.dtype("float32")]),
        st.sampled_from(["float16", "int32", np.int64, complex, "complex64", None, "float",
                         "xyz", object, 3])), label="dtype")
    valid_dtype = dtype in ("float32", "float64", np.float32, np.float64, "f4", "<f8", ">f4",
                            np.dtype("float32"))
    if dtype in ("float", float):  # NumPy reads "float" as float64
        valid_dtype = None
    if valid_dtype is False:
        bad.append("dtype")
    seed = data.draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(-2**65, 2**66),
                               st.builds(np.uint64, st.integers(0, 2**64 - 1)), JUNK_SCALARS,
                               st.just(None), st.floats(0, 10)), label="seed")
    if not (seed is None or (is_int(seed, 0, 2**64 - 1))):
        bad.append("seed")
    init = data.draw(st.one_of(st.sampled_from(["auto", "he", "glorot"]), st.floats(0, 3),
                               real_values().filter(lambda v: not (is_real(v) and math.isfinite(
                                   float(v)) and abs(float(v)) > 1e30)),
                               st.sampled_from(["xavier", "", "HE"])), label="init")
    if isinstance(init, str):
        if init not in ("auto", "he", "glorot"):
            bad.append("init")
    elif not real_in(init, low=0):
        bad.append("init")
    call = (f"bpcore.MLP({sizes!r}, activation={activation!r}, output_activation="
            f"{output_activation!r}, dtype={dtype!r}, seed={seed!r}, init={init!r})")
    note(call)
    ok, res = attempt(bpcore.MLP, sizes, activation=activation,
                      output_activation=output_activation, dtype=dtype, seed=seed, init=init)
    valid = False if bad else (None if valid_dtype is None else True)
    if sizes_kind == "iter":
        valid = None if not bad else False
    if not judge(ok, res, valid, bad or ["sizes", "dtype"], call):
        return
    model = res
    if sizes_kind in ("ok", "array"):
        want = [int(s) for s in sizes]
        assert model.sizes == want
        assert model.num_parameters == sum(a * b + b for a, b in zip(want, want[1:]))
        assert model.flat_params.size == model.num_parameters
        assert np.isfinite(model.flat_params).all()
    if seed is not None:
        again = bpcore.MLP(sizes if not isinstance(sizes, type(iter([]))) else [2, 3],
                           activation=activation, output_activation=output_activation,
                           dtype=dtype, seed=seed, init=init)
        if sizes_kind != "iter":
            np.testing.assert_array_equal(again.flat_params, model.flat_params)
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        assert np.all(np.abs(model.flat_params) <= np.float64(init) * (1 + 1e-6))


@given(data=st.data())
@counted
def test_init_scale(data):
    """MLP(..., init=s) and Dense(..., init=s) for any s >= 0 finite in float64: weights
    uniform in [-s, s] and finite in the model's dtype, or a ValueError naming init (an s
    that does not fit the dtype)."""
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    s = data.draw(st.one_of(st.floats(0, 1e300), st.sampled_from([3.4e38, 3.5e38, 1e308,
                                                                   1.7976931348623157e308])),
                  label="init")
    which = data.draw(st.sampled_from(["MLP", "Dense"]))
    call = (f"bpcore.MLP([2, 3], init={s!r}, dtype={dtype!r})" if which == "MLP"
            else f"bpcore.Dense(2, 3, init={s!r}, dtype={dtype!r})")
    note(call)
    ok, res = attempt(bpcore.MLP, [2, 3], init=s, dtype=dtype, seed=0) if which == "MLP" else \
        attempt(bpcore.Dense, 2, 3, init=s, dtype=dtype, seed=0)
    # s finite in the dtype, and 2s in double (weights are drawn as -s + 2s u, in double)
    fits = s * (1 + 1e-6) < float(np.finfo(dtype).max) and math.isfinite(2 * s)
    if not judge(ok, res, True if fits else None, ["init"], call):
        return
    params = res.flat_params if which == "MLP" else np.concatenate([res.W.ravel(), res.b])
    assert np.isfinite(params).all(), f"{call}: non-finite weights {params}"
    assert np.all(np.abs(params.astype(np.float64)) <= s * (1 + 1e-6))


@given(data=st.data())
@counted
def test_sequential_construction(data):
    """Sequential(*layers): chains Dense layers of matching sizes (and activations), or raises
    naming `layers`."""
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    items, codes, valid = [], [], True
    dense, prev = [], None
    for _ in range(data.draw(st.integers(0, 5))):
        kind = data.draw(st.sampled_from(["dense"] * 3 + ["act", "act", "junk", "net",
                                                             "other_dtype", "dup"]))
        if kind == "dense":
            fi = prev if (prev is not None and data.draw(st.integers(0, 4))) else \
                data.draw(st.integers(1, 4))
            fo = data.draw(st.integers(1, 4))
            items.append(bpcore.Dense(fi, fo, dtype=dtype, seed=0))
            codes.append(f"bpcore.Dense({fi}, {fo}, dtype={dtype!r})")
            if prev is not None and prev != fi:
                valid = False
            prev = fo
            dense.append(items[-1])
        elif kind == "other_dtype":
            other = "float64" if dtype == "float32" else "float32"
            fi = prev or 2
            items.append(bpcore.Dense(fi, 2, dtype=other, seed=0))
            codes.append(f"bpcore.Dense({fi}, 2, dtype={other!r})")
            if prev is not None or dense:
                valid = False
            if not dense:
                dtype = other
            prev = 2
            dense.append(items[-1])
        elif kind == "act":
            name = data.draw(st.sampled_from(ACTS))
            items.append(ACT_CLASSES[name]())
            codes.append(f"bpcore.{ACT_CLASSES[name].__name__}()")
        elif kind == "dup" and items:
            items.append(items[-1])
            codes.append(codes[-1] + " (the same object again)")
            valid = False
        elif kind == "net":
            items.append(bpcore.MLP([2, 2], seed=0))
            codes.append("bpcore.MLP([2, 2])")
            valid = False
        else:
            junk = data.draw(st.sampled_from([None, 3, "relu", np.zeros(2), lambda x: x]))
            items.append(junk)
            codes.append(repr(junk))
            valid = False
    if not dense:
        valid = False
    call = f"bpcore.Sequential({', '.join(codes)})"
    note(call)
    ok, res = attempt(bpcore.Sequential, *items)
    if judge(ok, res, valid, ["layers"], call):
        assert res.num_parameters == sum(d.num_parameters for d in dense)


# =============================================================================================
# properties: layers, networks, losses (in-process with SAFE_FORMS, in a child with ALL_FORMS)
# =============================================================================================

def check_dense_layer(data, forms):
    fan_in = data.draw(st.one_of(st.integers(1, 5), int_values()), label="fan_in")
    fan_out = data.draw(st.one_of(st.integers(1, 5), int_values()), label="fan_out")
    bad = [n for n, v in (("fan_in", fan_in), ("fan_out", fan_out)) if not is_int(v, 1)]
    big = [n for n, v in (("fan_in", fan_in), ("fan_out", fan_out)) if is_int(v, 7)]
    if big and not bad:  # large but valid sizes: only when the weights stay small
        if int(fan_in) * int(fan_out) > 4_000_000:
            fan_in, fan_out = min(fan_in, 6), min(fan_out, 6)
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    init = data.draw(st.one_of(st.sampled_from(["glorot", "he"]), st.floats(0, 3),
                               st.sampled_from(["auto", -1.0, math.nan, "x"])), label="init")
    if isinstance(init, str) and init not in ("glorot", "he"):
        bad.append("init")
    elif not isinstance(init, str) and not real_in(init, low=0):
        bad.append("init")
    mask, mask_ok = None, True
    if not bad and data.draw(st.booleans()):
        fi, fo = int(fan_in), int(fan_out)
        shape = data.draw(st.sampled_from([(fi, fo)] * 4 + [(fo, fi), (fi, fo + 1), (fi,)]))
        mdt = np.int8 if data.draw(st.booleans()) else np.float64
        elems = st.sampled_from([0, 1]) if data.draw(st.integers(0, 3)) else \
            st.sampled_from([0, 1, 2, -1] + ([0.5] if mdt is np.float64 else []))
        mask = np.array(data.draw(hnp.arrays(mdt, shape, elements=elems)))
        mask_ok = shape == (fi, fo) and bool(np.isin(mask, (0, 1)).all()) and \
            (fi != fo or shape == (fi, fo))
        if not mask_ok:
            bad.append("mask")
        note(f"mask = {_array_code(mask)}")
    call = f"bpcore.Dense({fan_in!r}, {fan_out!r}, mask=mask, init={init!r}, dtype={dtype!r})"
    note(call)
    ok, layer = attempt(bpcore.Dense, fan_in, fan_out, mask=mask, init=init, dtype=dtype,
                        seed=data.draw(st.integers(0, 100)))
    if not judge(ok, layer, False if bad else True, bad or ["fan_in"], call):
        return
    fan_in, fan_out = int(fan_in), int(fan_out)
    assert layer.W.shape == (fan_in, fan_out) and layer.b.shape == (fan_out,)
    if mask is not None:
        assert np.all(layer.W[mask == 0] == 0)
    n = data.draw(st.integers(0, 5), label="rows")
    X = data.draw(matrices(n, fan_in, forms, prefer=layer.dtype), label="X")
    _log_detail(f"Dense.forward({X!r})")
    ok, Z = attempt(layer.forward, X.obj)
    valid, Xv = matrix_validity(X, fan_in, layer.dtype)
    if not judge(ok, Z, valid, ["X"], "Dense.forward"):
        return
    assert Z.dtype == layer.dtype and Z.shape == (n, fan_out)
    ref = Reference([layer], Xv, layer.dtype)
    ref.check_output(Z, "Dense.forward")
    G = data.draw(matrices(n, fan_out, forms, magnitude="small"), label="dZ")
    _log_detail(f"Dense.backward({G!r})")
    ok, dX = attempt(layer.backward, G.obj)
    gvalid, Gv = matrix_validity(G, fan_out, layer.dtype)
    if not judge(ok, dX, gvalid, ["dZ"], "Dense.backward"):
        return
    grads, want_dX, EdX = ref.backward(Gv)
    dW, EdW, db, Edb = grads[id(layer)]
    dt = layer.dtype
    check_close(layer.dW, dW, EdW, "Dense.backward dW", dt)
    check_close(layer.db, db, Edb, "Dense.backward db", dt)
    check_close(dX, want_dX, EdX, "Dense.backward dX", dt)
    layer.backward(Gv)  # gradients accumulate until zero_grad
    check_close(layer.dW, 2 * dW, 2 * EdW, "Dense.backward dW (accumulated)", dt)
    layer.zero_grad()
    assert not layer.dW.any() and not layer.db.any()


@given(data=st.data())
@counted
def test_dense_layer(data):
    """Dense(fan_in, fan_out, mask, init, dtype, seed), forward and backward (twice: they
    accumulate) against NumPy."""
    check_dense_layer(data, SAFE_FORMS)


def check_activation(data, forms):
    name = data.draw(st.sampled_from(ACTS), label="activation")
    layer = ACT_CLASSES[name]()
    n, c = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    Z = data.draw(matrices(n, c, forms), label="Z")
    _log_detail(f"{name}.forward({Z!r})")
    ok, A = attempt(layer.forward, Z.obj)
    v = Z.values
    valid = None
    if v is None or v.dtype.kind not in "biuf" or v.ndim != 2 or v.shape[0] == 0:
        valid = False
    else:
        dt = v.dtype if v.dtype in MODEL_DTYPES else np.dtype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            conv = v.astype(dt)
        valid = bool(np.isfinite(conv).all())
    if not judge(ok, A, valid, ["Z"], f"{type(layer).__name__}.forward"):
        return
    assert A.dtype == dt and A.shape == v.shape
    ref = Reference([layer], conv, dt)
    ref.check_output(A, f"{type(layer).__name__}.forward")
    G = data.draw(matrices(n, c, forms, magnitude="small"), label="dA")
    _log_detail(f"{name}.backward({G!r})")
    ok, dZ = attempt(layer.backward, G.obj)
    gvalid, Gv = matrix_validity(G, c, dt)
    if not judge(ok, dZ, gvalid, ["dA"], f"{type(layer).__name__}.backward"):
        return
    if name == "relu" and ref.ambiguous:
        return
    _, want, E = ref.backward(Gv)
    check_close(dZ, want, E, f"{type(layer).__name__}.backward", dt)


@given(data=st.data())
@counted
def test_activation_layers(data):
    """Identity/ReLU/Sigmoid/Tanh forward and backward on every input kind against NumPy."""
    check_activation(data, SAFE_FORMS)


def check_network_forward_backward(data, forms):
    spec = data.draw(net_specs(), label="net")
    model = spec.build()
    n = data.draw(st.integers(0, 5), label="rows")
    X = data.draw(matrices(n, model.n_inputs, forms, prefer=model.dtype), label="X")
    _log_detail(f"{spec!r}.forward({X!r})")
    ok, out = attempt(model.forward, X.obj)
    valid, Xv = matrix_validity(X, model.n_inputs, model.dtype)
    if not judge(ok, out, valid, ["X"], "model.forward"):
        return
    ref = Reference(model.layers, Xv, model.dtype)
    assert out.dtype == model.dtype and out.shape == (n, model.n_outputs)
    ref.check_output(out, "model.forward")
    G = data.draw(matrices(n, model.n_outputs, forms, magnitude="small", prefer=model.dtype), label="grad_output")
    input_grad = data.draw(st.booleans(), label="input_grad")
    model.zero_grad()
    _log_detail(f"backward({G!r}, input_grad={input_grad})")
    ok, dX = attempt(model.backward, G.obj, input_grad=input_grad)
    gvalid, Gv = matrix_validity(G, model.n_outputs, model.dtype)
    if not judge(ok, dX, gvalid, ["grad_output"], "model.backward"):
        return
    if ref.ambiguous or not ref.row_ok.all():
        event("backward not compared (ReLU at a kink, or overflow)")
        return
    grads, want_dX, EdX = ref.backward(Gv)
    for m in model.layers:
        if isinstance(m, bpcore.Dense):
            dW, EdW, db, Edb = grads[id(m)]
            check_close(m.dW, dW, EdW, f"model.backward dW of {m!r}", model.dtype)
            check_close(m.db, db, Edb, f"model.backward db of {m!r}", model.dtype)
    if input_grad:
        assert dX.shape == (n, model.n_inputs)
        check_close(dX, want_dX, EdX, "model.backward dX", model.dtype)
    else:
        assert dX is None


@given(data=st.data())
@counted
def test_network_forward_backward(data):
    """Sequential/MLP forward and backward (input_grad or not) against NumPy."""
    check_network_forward_backward(data, SAFE_FORMS)


def check_predict(data, forms):
    spec = data.draw(net_specs(), label="net")
    model = spec.build()
    n = data.draw(st.integers(0, 6), label="rows")
    X = data.draw(matrices(n, model.n_inputs, forms, prefer=model.dtype, sparse_ok=True), label="X")
    _log_detail(f"{spec!r}.predict({X!r})")
    ok, out = attempt(model.predict, X.obj)
    valid, Xv = matrix_validity(X, model.n_inputs, model.dtype)
    if not judge(ok, out, valid, ["X"], "model.predict"):
        return
    assert out.dtype == model.dtype and out.shape == (n, model.n_outputs)
    Reference(model.layers, Xv, model.dtype).check_output(out, "model.predict")


@given(data=st.data())
@counted
def test_predict(data):
    """model.predict on every input kind against NumPy's forward pass."""
    check_predict(data, SAFE_FORMS)


@st.composite
def targets(draw, loss_name, n, c, forms):
    """Arg for a loss target: MSE (n, c) values (or (n,) when c == 1); cross-entropy (n,)
    labels of any kind, or (n, c) probability rows."""
    if loss_name == "mse" or c == 0 or draw(st.integers(0, 3)) == 0:
        rows = n if draw(st.integers(0, 6)) else draw(st.integers(0, n + 2))
        if loss_name == "mse" and c == 1 and draw(st.booleans()):
            a = draw(numbers_array((rows,), magnitude=draw(st.sampled_from(["small", "wide"]))))
            obj, vals, code = in_form(a, draw(st.sampled_from(["c", "list"])), draw)
            return Arg(obj, vals, code, "vector")
        if loss_name == "xent":
            p = draw(hnp.arrays(np.float64, (rows, c), elements=st.floats(0, 1)))
            if draw(st.booleans()):
                with np.errstate(invalid="ignore"):
                    p = np.where(p.sum(1, keepdims=True) > 0, p / p.sum(1, keepdims=True), p)
            if draw(st.integers(0, 4)) == 0:
                p = p * draw(st.sampled_from([-1.0, 1e300, math.nan]))
            obj, vals, code = in_form(p.astype(draw(st.sampled_from(["float64", "float32",
                                                                     "float16"]))),
                                      draw(st.sampled_from(forms)), draw)
            return Arg(obj, vals, code, "probs")
        return draw(matrices(rows, c, forms, magnitude=draw(st.sampled_from(
            ["small", "small", "wide", "huge", "nonfinite"]))))
    kind = draw(st.sampled_from(["int", "int", "float", "bool", "junk", "range", "length",
                                 "2d1col"]))
    length = n if kind != "length" else draw(st.integers(0, n + 3))
    if kind == "junk":
        dt = draw(st.sampled_from(["U1", "object", "complex128", "datetime64[s]"]))
        a = np.zeros(length, dtype=dt) if dt != "U1" else np.array(["a"] * length, dtype="U1")
        return Arg(a, None, f"np.zeros({length}, {dt!r})", "junk")
    if kind == "bool":
        a = draw(hnp.arrays(bool, (length,)))
    elif kind == "float":
        dt = draw(st.sampled_from(["float64", "float32", "float16"]))
        el = st.one_of(st.integers(0, c - 1).map(float), st.floats(-1, c + 1),
                       st.sampled_from([math.nan, math.inf, 1e300, -0.0]))
        a = draw(hnp.arrays(np.float64, (length,), elements=el)).astype(dt)
    elif kind == "range":
        dt = draw(st.sampled_from(["int64", "int8", "uint64", "int32"]))
        info = np.iinfo(dt)
        a = draw(hnp.arrays(dt, (length,), elements=st.integers(int(max(info.min, -2**63)),
                                                                 int(info.max))))
    elif kind == "2d1col":
        a = draw(hnp.arrays(np.int64, (length, 1), elements=st.integers(0, c - 1)))
    else:
        dt = draw(st.sampled_from(["int64", "int32", "uint8", "int16", "uint64", ">i4"]))
        a = draw(hnp.arrays(np.dtype(dt).newbyteorder("="), (length,),
                            elements=st.integers(0, c - 1))).astype(dt)
    form = draw(st.sampled_from([f for f in forms if f not in ("matrix", "sparse", "transposed",
                                                                "broadcast")]))
    obj, vals, code = in_form(a, form, draw)
    return Arg(obj, vals, code, kind)


def target_validity(loss_name, T, n, c, dtype):
    """(valid, kind, values): valid True/False/None; kind "mse", "labels" or "probs"."""
    v = T.values
    if v is None or not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
        return False, None, None
    if loss_name == "mse":
        if v.ndim == 1 and c == 1:
            v = v.reshape(-1, 1)
        ok, conv = matrix_validity(Arg(v, v, ""), c, dtype)
        if not ok or v.shape[0] != n:
            return False, None, None
        return True, "mse", conv
    if v.ndim == 1:
        if v.shape[0] != n:
            return False, None, None
        if v.dtype.kind == "f":
            if not np.isfinite(v).all() or np.any(v != np.round(v)):
                return False, None, None
        with np.errstate(invalid="ignore"):
            if np.any(v < 0) or np.any(v >= c):
                return False, None, None
        return True, "labels", v.astype(np.intp)
    ok, conv = matrix_validity(Arg(v, v, ""), c, dtype)
    if not ok or v.shape[0] != n:
        return False, None, None
    if np.any(conv < 0):
        return False, None, None
    return True, "probs", conv


def _loss_obj(name, reduction):
    return bpcore.MSELoss(reduction) if name == "mse" else \
        bpcore.SoftmaxCrossEntropyLoss(reduction)


def check_losses(data, forms):
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    reductions = ("mean", "sum", "half_sum") if name == "mse" else ("mean", "sum")
    reduction = data.draw(st.one_of(st.sampled_from(reductions),
                                    st.sampled_from(["Mean", "none", None, 0, "half_sum"])),
                          label="reduction")
    cls = bpcore.MSELoss if name == "mse" else bpcore.SoftmaxCrossEntropyLoss
    ok, loss = attempt(cls, reduction)
    if not judge(ok, loss, reduction in reductions, ["reduction"], f"{cls.__name__}({reduction!r})"):
        return
    n, c = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 4))
    Y = data.draw(matrices(n, c, forms), label="output")
    T = data.draw(targets(name, n, c, forms), label="target")
    _log_detail(f"{cls.__name__}({reduction!r})({Y!r}, {T!r})")
    ok, value = attempt(loss, Y.obj, T.obj)
    v = Y.values
    yvalid = not (v is None or v.dtype.kind not in "biuf" or v.ndim != 2 or v.shape[0] == 0)
    dt = np.dtype(np.float64)
    if yvalid:
        dt = v.dtype if v.dtype in MODEL_DTYPES else np.dtype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            Yv = v.astype(dt)
        yvalid = bool(np.isfinite(Yv).all())
    # the target must match the output's shape: the drawn one, unless the output's form
    # reshaped it (a [[]] list is one row of no columns)
    rows, c = v.shape if yvalid else (n, c)
    tvalid, kind, Tv = target_validity(name, T, rows, c, dt)
    names = (["output"] if not yvalid else []) + (["target"] if not tvalid else [])
    valid = bool(yvalid and tvalid)
    if c == 0 and name == "xent":  # no classes: refused, naming the output or the target
        valid, names = False, ["output", "target"]
    if c == 0 and name == "mse" and valid:
        valid = None  # a mean over no elements: 0 or NaN, or refused
        names = ["output", "target"]
    if not judge(ok, value, valid, names, f"{cls.__name__}.__call__"):
        return
    if c == 0:
        return
    assert isinstance(value, float)
    want, bound, G, EG = ref_loss(name, reduction, Yv, Tv, dt)
    if math.isfinite(want) and abs(want) + bound < float(np.finfo(dt).max) / 16:
        check_close(value, want, bound, f"{cls.__name__}({reduction!r}) value")
    grad = loss.backward()
    assert grad.shape == Yv.shape and grad.dtype == dt
    check_close(grad, G, EG, f"{cls.__name__}({reduction!r}).backward()", dt)


@given(data=st.data())
@counted
def test_losses(data):
    """MSELoss / SoftmaxCrossEntropyLoss (every reduction) __call__ and backward against the
    NumPy formulas; targets of every kind (labels of any dtype, probability rows)."""
    check_losses(data, SAFE_FORMS)


def check_evaluate(data, forms):
    spec = data.draw(net_specs(engine_only=data.draw(st.booleans())), label="net")
    model = spec.build()
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    reduction = data.draw(st.sampled_from(["mean", "sum"] + (["half_sum"] if name == "mse" else [])))
    loss = _loss_obj(name, reduction)
    n = data.draw(st.integers(0, 6), label="rows")
    X = data.draw(matrices(n, model.n_inputs, forms, prefer=model.dtype, sparse_ok=True), label="X")
    T = data.draw(targets(name, n, model.n_outputs, forms), label="y")
    _log_detail(f"{spec!r}.evaluate({X!r}, {T!r}, {loss!r})")
    ok, res = attempt(model.evaluate, X.obj, T.obj, loss)
    xvalid, Xv = matrix_validity(X, model.n_inputs, model.dtype)
    tvalid, kind, Tv = target_validity(name, T, n, model.n_outputs, model.dtype)
    engine = spec.kind == "mlp" or _engine_layout_ok(spec)
    valid = bool(xvalid and tvalid) if engine else (None if xvalid and tvalid else False)
    names = (["X"] if not xvalid else []) + (["y", "target"] if not tvalid else []) + \
        ([] if engine else ["layers"])
    if not judge(ok, res, valid, names, "model.evaluate"):
        return
    ref = Reference(model.layers, Xv, model.dtype)
    if not ref.row_ok.all():
        return
    want, bound, G, _ = ref_loss(name, reduction, ref.out, Tv, model.dtype)
    # the forward pass's error moves the loss by at most |dloss/dY| * E (+ second order)
    bound += float((np.abs(G) * ref.err).sum() + (ref.err ** 2).sum() * (2 if name == "mse" else 1))
    if math.isfinite(want):
        check_close(res["loss"], want, bound, "model.evaluate loss")
    if model.n_outputs == 1:
        assert res["accuracy"] is None
        return
    truth = Tv if Tv.ndim == 1 else np.argmax(Tv, axis=1)
    srt = np.sort(ref.out, axis=1)
    gap_ok = np.all(srt[:, -1] - srt[:, -2] > 2 * ref.err.max(axis=1))
    if Tv.ndim == 2:
        ts = np.sort(Tv, axis=1)
        gap_ok &= np.all(ts[:, -1] > ts[:, -2])
    if gap_ok:
        want_acc = float(np.mean(np.argmax(ref.out, axis=1) == truth))
        assert res["accuracy"] == pytest.approx(want_acc), (res, want_acc)


def _huge(*args):
    """Whether any drawn array holds a value of magnitude > 1e10 (a step may overflow)."""
    for a in args:
        v = a.values
        if isinstance(v, np.ndarray) and v.dtype.kind in "iuf" and v.size:
            with np.errstate(invalid="ignore"):
                if np.nanmax(np.abs(v.astype(np.float64))) > 1e10:
                    return True
    return False


def _engine_layout_ok(spec):
    """Whether the fused engine runs this network: Dense layers each followed by at most one
    activation (the documented layout)."""
    if spec.kind == "mlp":
        return True
    layers = spec.layers
    if layers[0][0] != "dense":
        return False
    for a, b in zip(layers, layers[1:]):
        if a[0] == "act" and b[0] == "act":
            return False
    return True


@given(data=st.data())
@counted
def test_evaluate(data):
    """model.evaluate(X, y, loss): loss and accuracy against NumPy."""
    check_evaluate(data, SAFE_FORMS)


# =============================================================================================
# properties: training
# =============================================================================================

@dataclasses.dataclass
class SGDSpec:
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay: float

    def build(self, model):
        return bpcore.SGD(model, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                          weight_decay=self.weight_decay, decay=self.decay)


@st.composite
def sgd_specs(draw):
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    return SGDSpec(lr=draw(st.sampled_from([0.0, 0.01, 0.1, 0.5])), momentum=momentum,
                   nesterov=momentum > 0 and draw(st.booleans()),
                   weight_decay=draw(st.sampled_from([0.0, 0.0, 1e-2])),
                   decay=draw(st.sampled_from([0.0, 0.0, 1e-3])))


def ref_sgd_update(w, g, v, s):
    """bpcore's SGD (README): g += wd*w; v <- m v - lr g; w <- w + v (Nesterov: w + m v - lr g);
    then w <- (1 - decay) w."""
    g = g + s.weight_decay * w
    v = s.momentum * v - s.lr * g
    step = s.momentum * v - s.lr * g if s.nesterov else v
    w = w + step
    return w * (1 - s.decay), v


class RefTrainer:
    """A float64 NumPy copy of a network's weights, trained step by step as bpcore should."""

    def __init__(self, model):
        self.model = model
        self.dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
        self.w = [(m.W.astype(np.float64).copy(), m.b.astype(np.float64).copy()) for m in self.dense]
        self.v = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.w]
        self.scale = [(np.abs(W).copy(), np.abs(b).copy()) for W, b in self.w]
        # what the gradients' own error bounds (the Reference's: a saturated tanh's 1 - a^2 is
        # known only to its rounding over a small number) can move the weights and velocities
        self.err = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.w]
        self.verr = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.w]
        self.ambiguous = False

    def _layers(self):
        """Proxies of the network's layers holding the reference's weights."""
        out, it = [], iter(self.w)
        for m in self.model.layers:
            if isinstance(m, bpcore.Dense):
                W, b = next(it)
                out.append(_DenseProxy(W, b, m.mask))
            else:
                out.append(m)
        return out

    def step(self, X, T, loss_name, reduction, sgd, max_grad_norm=None):
        layers = self._layers()
        ref = Reference(layers, X, np.float64)
        self.ambiguous |= ref.ambiguous
        value, _, G, _ = ref_loss(loss_name, reduction, ref.out, T, np.float64)
        grads, _, _ = ref.backward(G)
        gs = [(grads[id(p)][0], grads[id(p)][2]) for p in layers if isinstance(p, _DenseProxy)]
        egs = [(grads[id(p)][1], grads[id(p)][3]) for p in layers if isinstance(p, _DenseProxy)]
        if max_grad_norm is not None:
            norm = math.sqrt(sum(float((gW ** 2).sum() + (gb ** 2).sum()) for gW, gb in gs))
            coef = max_grad_norm / (norm + 1e-6)
            if coef < 1:
                gs = [(gW * coef, gb * coef) for gW, gb in gs]
                egs = [(eW * coef, eb * coef) for eW, eb in egs]
        for i, (eW, eb) in enumerate(egs):
            # an error e in g moves v by m ev + lr e and w by at most (1 + m) times that
            (vW, vb), (wW, wb) = self.verr[i], self.err[i]
            vW, vb = sgd.momentum * vW + sgd.lr * eW, sgd.momentum * vb + sgd.lr * eb
            self.verr[i] = (vW, vb)
            self.err[i] = (wW + (1 + sgd.momentum) * vW, wb + (1 + sgd.momentum) * vb)
        new_w, new_v = [], []
        for (W, b), (vW, vb), (gW, gb), i in zip(self.w, self.v, gs, range(len(gs))):
            W2, vW2 = ref_sgd_update(W, gW, vW, sgd)
            b2, vb2 = ref_sgd_update(b, gb, vb, sgd)
            sW, sb = self.scale[i]
            self.scale[i] = (sW + np.abs(W2) + np.abs(vW2) + sgd.lr * np.abs(gW),
                             sb + np.abs(b2) + np.abs(vb2) + sgd.lr * np.abs(gb))
            new_w.append((W2, b2))
            new_v.append((vW2, vb2))
        self.w, self.v = new_w, new_v
        return value

    def check(self, rtol, what):
        for m, (W, b), (sW, sb), (eW, eb) in zip(self.dense, self.w, self.scale, self.err):
            check_close(m.W, W, rtol * sW + eW + 1e-300, f"{what}: W of {m!r}")
            check_close(m.b, b, rtol * sb + eb + 1e-300, f"{what}: b of {m!r}")


class _DenseProxy(bpcore.Dense):
    """A stand-in Dense (for the reference) with given W, b and mask; no bpcore buffers."""

    def __init__(self, W, b, mask):  # noqa: D107 -- deliberately skips Dense.__init__
        self._W, self._b, self.mask = W, b, mask

    W = property(lambda self: self._W)
    b = property(lambda self: self._b)


@given(data=st.data())
@counted
def test_train_step_matches_numpy_sgd(data):
    """train_step (float64, tiny nets, every loss, SGD options, clipping) against a NumPy
    step: two steps on the same batch, so momentum is exercised."""
    spec = data.draw(net_specs(dtypes=("float64",), engine_only=True, max_width=4), label="net")
    model = spec.build()
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    reduction = data.draw(st.sampled_from(["mean", "sum"] + (["half_sum"] if name == "mse" else [])))
    loss = _loss_obj(name, reduction)
    sgd = data.draw(sgd_specs(), label="sgd")
    opt = sgd.build(model)
    max_norm = data.draw(st.sampled_from([None, None, 0.1, 1.0, 100.0]), label="max_grad_norm")
    n = data.draw(st.integers(1, 5), label="rows")
    X = data.draw(hnp.arrays(np.float64, (n, model.n_inputs), elements=st.floats(-2, 2)), label="X")
    if name == "mse":
        T = data.draw(hnp.arrays(np.float64, (n, model.n_outputs), elements=st.floats(-2, 2)),
                      label="y")
    else:
        T = data.draw(hnp.arrays(np.intp, (n,), elements=st.integers(0, model.n_outputs - 1)),
                      label="y")
    ref = RefTrainer(model)
    for step in range(2):
        want = ref.step(X, T, name, reduction, sgd, max_norm)
        got = model.train_step(X, T, loss, opt, max_grad_norm=max_norm)
        if ref.ambiguous:
            event("train_step not compared (ReLU at a kink)")
            return
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12), (step, got, want)
        ref.check(1e-10, f"train_step {step + 1}")


def check_train_step_arguments(data, forms):
    spec = data.draw(net_specs(engine_only=True), label="net")
    model = spec.build()
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    n = data.draw(st.integers(0, 5), label="rows")
    X = data.draw(matrices(n, model.n_inputs, forms, prefer=model.dtype, magnitude=data.draw(st.sampled_from(
        ["small", "small", "wide", "nonfinite"])), sparse_ok=True), label="X")
    T = data.draw(targets(name, n, model.n_outputs, forms), label="y")
    loss = data.draw(st.sampled_from(["ok"] * 6 + ["other", "junk"]), label="loss_kind")
    if loss == "ok":
        loss_obj = _loss_obj(name, "mean")
    elif loss == "other":
        loss_obj = _loss_obj("xent" if name == "mse" else "mse", "mean")
        name = "xent" if name == "mse" else "mse"
    else:
        loss_obj = data.draw(st.sampled_from([None, "mse", lambda a, b: 0.0]))
    optk = data.draw(st.sampled_from(["sgd", "sgd", "adam", "adamw", "junk", "lbfgs"]),
                     label="optimizer")
    opt = {"sgd": lambda: bpcore.SGD(model, lr=0.01), "adam": lambda: bpcore.Adam(model),
           "adamw": lambda: bpcore.AdamW(model), "junk": lambda: "sgd",
           "lbfgs": lambda: bpcore.LBFGS()}[optk]()
    max_norm = data.draw(st.one_of(st.just(None), st.floats(0.1, 10), real_values()),
                         label="max_grad_norm")
    _log_detail(f"{spec!r}.train_step({X!r}, {T!r}, {loss_obj!r}, {optk}, max_grad_norm={max_norm!r})")
    ok, res = attempt(model.train_step, X.obj, T.obj, loss_obj, opt, max_grad_norm=max_norm)
    bad = []
    xvalid, Xv = matrix_validity(X, model.n_inputs, model.dtype)
    if not xvalid:
        bad.append("X")
    if loss != "ok" and loss != "other":
        bad.append("loss")
    if optk in ("junk", "lbfgs"):
        bad.append("optimizer")
    if max_norm is not None and not real_in(max_norm, low=0, low_open=True):
        bad.append("max_grad_norm")
    tvalid, kind, Tv = target_validity(name, T, n, model.n_outputs, model.dtype)
    if not tvalid:
        bad += ["y", "target"]
    if not bad and _huge(X, T) and not judge(ok, res, None, ["train_step"], "train_step",
                                             (bpcore.NonFiniteError,)):
        return  # a NonFiniteError on valid data: the step overflowed (huge values)
    if not judge(ok, res, False if bad else True, bad or ["X"], "train_step"):
        return
    assert isinstance(res, float)
    assert np.isfinite(model.flat_params).all()


@given(data=st.data())
@counted
def test_train_step_arguments(data):
    """train_step(X, y, loss, optimizer, max_grad_norm) with every kind of argument: works,
    or raises naming the argument at fault."""
    check_train_step_arguments(data, SAFE_FORMS)


@given(data=st.data())
@counted
@examples(0.5)
def test_fit_matches_numpy_sgd(data):
    """fit(shuffle=False) (float64, SGD) against NumPy steps over consecutive batches: final
    weights and each epoch's loss (mean over rows, weighted by batch size; summed for "sum").
    Errors of every step compound, so the bound is rtol 1e-9 of the sum of |w|, |v| and
    lr*|g| over the steps."""
    spec = data.draw(net_specs(dtypes=("float64",), engine_only=True, max_width=3), label="net")
    model = spec.build()
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    reduction = data.draw(st.sampled_from(["mean", "sum"]))
    loss = _loss_obj(name, reduction)
    sgd = data.draw(sgd_specs(), label="sgd")
    sgd.lr = min(sgd.lr, 0.1)
    opt = sgd.build(model)
    n = data.draw(st.integers(1, 7), label="rows")
    batch_size = data.draw(st.integers(1, n + 2), label="batch_size")
    epochs = data.draw(st.integers(0, 2), label="epochs")
    max_norm = data.draw(st.sampled_from([None, 0.5]), label="max_grad_norm")
    X = data.draw(hnp.arrays(np.float64, (n, model.n_inputs), elements=st.floats(-2, 2)), label="X")
    if name == "mse":
        T = data.draw(hnp.arrays(np.float64, (n, model.n_outputs), elements=st.floats(-2, 2)))
    else:
        T = data.draw(hnp.arrays(np.intp, (n,), elements=st.integers(0, model.n_outputs - 1)))
    ref = RefTrainer(model)
    want_hist = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, batch_size):
            Xb, Tb = X[start:start + batch_size], T[start:start + batch_size]
            v = ref.step(Xb, Tb, name, reduction, sgd, max_norm)
            total += v * len(Xb) if reduction == "mean" else v
        want_hist.append(total / n if reduction == "mean" else total)
    hist = model.fit(X, T, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size,
                     shuffle=False, max_grad_norm=max_norm)
    assert len(hist["loss"]) == epochs
    if ref.ambiguous:
        event("fit not compared (ReLU at a kink)")
        return
    for got, want in zip(hist["loss"], want_hist):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (hist["loss"], want_hist)
    ref.check(1e-9, "fit")


@given(data=st.data())
@counted
def test_sample_weights(data):
    """train_step(..., sample_weight=w) for any w: finite weights >= 0, not all zero, one per
    row, train (the loss the weighted mean of the rows' losses, from NumPy on the model's own
    outputs); anything else raises naming sample_weight, leaving the weights untouched."""
    spec = data.draw(net_specs(dtypes=("float64",), engine_only=True, max_width=4), label="net")
    model = spec.build()
    n = data.draw(st.integers(1, 6), label="rows")
    X = data.draw(hnp.arrays(np.float64, (n, model.n_inputs), elements=st.floats(-2, 2)), label="X")
    y = data.draw(hnp.arrays(np.intp, (n,), elements=st.integers(0, model.n_outputs - 1)), label="y")
    weights = data.draw(st.one_of(
        hnp.arrays(np.float64, st.sampled_from([(n,), (n + 1,), (n, 1), ()]),
                   elements=st.one_of(st.floats(-3, 1e300), st.sampled_from(
                       [np.nan, np.inf, -np.inf, 0.0]))),
        hnp.arrays(np.float64, (n,), elements=st.floats(0, 5)),
        st.lists(st.integers(-1, 3), min_size=n, max_size=n),
        st.sampled_from(["abc", None, 1.0, [[1.0]]])), label="sample_weight")
    w = np.asarray(weights, dtype=object)
    valid = False
    if weights is None:
        valid = True
    elif w.shape == (n,) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in w.tolist()):
        wf = w.astype(np.float64)
        valid = bool(np.isfinite(wf).all() and (wf >= 0).all() and wf.any())
    loss = bpcore.SoftmaxCrossEntropyLoss()
    before = model.flat_params.copy()
    Z = model.predict(X)
    ok, value = attempt(model.train_step, X, y, loss, bpcore.SGD(model, lr=0.01),
                        sample_weight=weights)
    if not judge(ok, value, valid, ["sample_weight"], "train_step(sample_weight=...)"):
        np.testing.assert_array_equal(model.flat_params, before)
        return
    rows = (np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1)
            - Z[np.arange(n), y])
    wf = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    assert value == pytest.approx((wf * rows).sum() / wf.sum(), rel=1e-10, abs=1e-12)


def check_fit_arguments(data, forms):
    spec = data.draw(net_specs(engine_only=True, max_width=3), label="net")
    model = spec.build()
    name = data.draw(st.sampled_from(["mse", "xent"]), label="loss")
    loss_obj = _loss_obj(name, "mean")
    n = data.draw(st.integers(0, 6), label="rows")
    X = data.draw(matrices(n, model.n_inputs, forms, prefer=model.dtype, magnitude="small", sparse_ok=True), label="X")
    T = data.draw(targets(name, n, model.n_outputs, forms), label="y")
    kw, bad = {}, []
    xvalid, Xv = matrix_validity(X, model.n_inputs, model.dtype)
    if not xvalid:
        bad.append("X")
    tvalid, _, _ = target_validity(name, T, n, model.n_outputs, model.dtype)
    if not tvalid:
        bad += ["y", "target"]
    if data.draw(st.booleans()):
        kw["epochs"] = data.draw(st.one_of(st.integers(0, 2), int_values()), label="epochs")
        if not is_int(kw["epochs"], 0):
            bad.append("epochs")
        elif kw["epochs"] > 3:
            kw["epochs"] = 2
    if data.draw(st.booleans()):
        kw["batch_size"] = data.draw(st.one_of(st.integers(1, 8), int_values()), label="batch_size")
        if not is_int(kw["batch_size"], 1):
            bad.append("batch_size")
    shuffle = data.draw(st.sampled_from([True, False, None, 0, 1, "yes"]), label="shuffle")
    kw["shuffle"] = shuffle
    seed_given = data.draw(st.booleans())
    seed_ok = True
    if seed_given:
        kw["seed"] = data.draw(st.one_of(st.integers(0, 2**64 - 1), int_values(), st.none()),
                               label="seed")
        seed_ok = kw["seed"] is None or is_int(kw["seed"], 0, 2**64 - 1)
        if not seed_ok and shuffle:
            bad.append("seed")
    if data.draw(st.booleans()):
        kw["max_grad_norm"] = data.draw(st.one_of(st.none(), st.floats(0.1, 10), real_values()),
                                        label="max_grad_norm")
        m = kw["max_grad_norm"]
        if m is not None and not real_in(m, low=0, low_open=True):
            bad.append("max_grad_norm")
    vkind = data.draw(st.sampled_from(["none"] * 3 + ["ok", "ok", "badX", "bady", "notpair"]),
                      label="validation")
    if vkind != "none":
        nv = data.draw(st.integers(1, 4))
        Xval = data.draw(hnp.arrays(model.dtype, (nv, model.n_inputs), elements=st.floats(-1, 1)))
        if name == "mse":
            yval = np.zeros((nv, model.n_outputs), model.dtype)
        else:
            yval = np.zeros(nv, np.intp)
        if vkind == "badX":
            Xval = Xval[:, :0] if data.draw(st.booleans()) else np.full_like(Xval, np.nan)
        if vkind == "bady":
            yval = yval[:-1] if data.draw(st.booleans()) else \
                (np.full(yval.shape, model.n_outputs + 3) if name == "xent" else
                 np.full(yval.shape, np.inf))
        kw["validation_data"] = (Xval, yval) if vkind != "notpair" else \
            data.draw(st.sampled_from([Xval, [Xval], (Xval, yval, yval), "val"]))
        note(f"validation_data ({vkind}) = {kw['validation_data']!r}")
        if vkind in ("badX", "bady", "notpair"):
            bad.append("validation_data")
    if data.draw(st.booleans()):
        kw["on_nonfinite"] = data.draw(st.sampled_from(["raise", "stop", "ignore", None, 1]),
                                       label="on_nonfinite")
        if kw["on_nonfinite"] not in ("raise", "stop"):
            bad.append("on_nonfinite")
    if data.draw(st.integers(0, 3)) == 0:
        ck = data.draw(st.sampled_from(["none", "one", "list", "junk", "junk_item"]),
                       label="callbacks")
        kw["callbacks"] = {"none": None, "one": lambda e, logs: None,
                           "list": [lambda e, logs: False], "junk": 3, "junk_item": [None]}[ck]
        if ck.startswith("junk"):
            bad.append("callbacks")
    if data.draw(st.integers(0, 3)) == 0:
        sk = data.draw(st.sampled_from(["none", "lr", "step", "junk", "bad_key", "bad_lr"]),
                       label="schedule")
        kw["schedule"] = {"none": None, "lr": lambda e: {"lr": 0.01},
                          "step": bpcore.schedules.StepLR(step_size=1, gamma=0.5),
                          "junk": "cosine", "bad_key": lambda e: {"gamma": 0.5},
                          "bad_lr": lambda e: {"lr": -1.0}}[sk]
        runs = is_int(kw.get("epochs", 1)) and kw.get("epochs", 1) > 0
        if sk == "junk" or (sk in ("bad_key", "bad_lr") and runs):
            bad += ["schedule", "lr", "gamma"]
    lossk = data.draw(st.sampled_from(["ok"] * 8 + ["junk"]), label="loss_kind")
    if lossk == "junk":
        loss_obj = data.draw(st.sampled_from([None, "mse", 3]))
        bad.append("loss")
    optk = data.draw(st.sampled_from(["sgd"] * 5 + ["adam", "junk", "lbfgs"]), label="optimizer")
    opt = {"sgd": lambda: bpcore.SGD(model, lr=0.01), "adam": lambda: bpcore.Adam(model),
           "junk": lambda: None, "lbfgs": lambda: bpcore.LBFGS(max_iter=3)}[optk]()
    if optk == "junk":
        bad.append("optimizer")
    if optk == "lbfgs":  # one scipy call: per-epoch settings are refused, naming them
        for key in ("validation_data", "max_grad_norm", "callbacks", "schedule"):
            if kw.get(key) is not None:
                bad.append(key)
    valid = False if bad else True
    if not bad and not seed_ok:
        valid = None  # an unused seed (shuffle=False) may be ignored or refused
    names = bad + ([] if seed_ok or "seed" in bad else ["seed"])
    call = (f"{spec!r}.fit({X!r}, {T!r}, loss={loss_obj!r}, optimizer={optk}, "
            + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")")
    note(call)
    _log_detail(call)
    ok, hist = attempt(model.fit, X.obj, T.obj, loss=loss_obj, optimizer=opt, **kw)
    if valid and _huge(X, T) and not judge(ok, hist, None, ["fit"], "fit",
                                           (bpcore.NonFiniteError,)):
        return  # huge (finite) targets: the loss or an update may overflow, as documented
    if not judge(ok, hist, valid, names, "fit"):
        return
    epochs = kw.get("epochs", 1)
    if optk == "lbfgs":
        assert all(math.isfinite(v) for v in hist["loss"])
        return
    if "stopped" not in hist:
        assert len(hist["loss"]) == epochs
    assert all(math.isfinite(v) for v in hist["loss"])
    if "validation_data" in kw:
        assert len(hist["val_loss"]) == epochs


@given(data=st.data())
@counted
@examples(0.7)
def test_fit_arguments(data):
    """fit(X, y, loss, optimizer, epochs, batch_size, shuffle, seed, validation_data,
    max_grad_norm) with every kind of argument: trains, or raises naming the argument."""
    check_fit_arguments(data, SAFE_FORMS)


# =============================================================================================
# properties: optimizers
# =============================================================================================

def ref_adam(w, g, state, t, lr, b1, b2, eps, wd, decoupled, amsgrad, sklearn):
    if decoupled:
        w = w * (1 - lr * wd)
    elif wd:
        g = g + wd * w
    m = b1 * state["m"] + (1 - b1) * g
    v = b2 * state["v"] + (1 - b2) * g * g
    state["m"], state["v"] = m, v
    if amsgrad:
        state["vmax"] = np.maximum(state["vmax"], v)
        v = state["vmax"]
    if sklearn:
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - lr_t * m / (np.sqrt(v) + eps)
    return w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


@given(data=st.data())
@counted
def test_optimizers(data):
    """SGD/Adam/AdamW(params, settings...) with junk settings raise naming the setting; valid
    ones take two steps (float64) equal to the NumPy update rule."""
    kind = data.draw(st.sampled_from(["SGD", "Adam", "AdamW"]), label="optimizer")
    model = bpcore.MLP(data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=3)),
                       dtype="float64", seed=data.draw(st.integers(0, 100)))
    pkind = data.draw(st.sampled_from(["model"] * 3 + ["list", "groups", "empty", "junk", "dup"]),
                      label="params")
    bad = []
    if pkind == "model":
        params = model
    elif pkind == "list":
        params = model.parameters()
    elif pkind == "groups":
        params = [{"params": [p for p in model.parameters() if p.name == "W"]},
                  {"params": [p for p in model.parameters() if p.name == "b"], "lr": 0.05}]
    elif pkind == "empty":
        params = []
        bad.append("params")
    elif pkind == "dup":
        params = model.parameters() * 2
        bad.append("params")
    else:
        params = data.draw(st.sampled_from([None, 3, "W", [np.zeros(3)], {"params": []}]))
        bad.append("params")
    kw = {}
    names = {"SGD": ["lr", "momentum", "nesterov", "weight_decay", "decay"],
             "Adam": ["lr", "betas", "eps", "weight_decay", "amsgrad", "eps_form"],
             "AdamW": ["lr", "betas", "eps", "weight_decay", "amsgrad"]}[kind]
    gray = False
    for key in names:
        if not data.draw(st.booleans()):
            continue
        if key in ("nesterov", "amsgrad"):
            kw[key] = data.draw(st.sampled_from([True, False, 0, 1, None, "yes"]), label=key)
            if not isinstance(kw[key], bool):
                gray = True
        elif key == "eps_form":
            kw[key] = data.draw(st.sampled_from(["torch", "sklearn", "keras", None, 1]), label=key)
            if kw[key] not in ("torch", "sklearn"):
                bad.append(key)
        elif key == "betas":
            kw[key] = data.draw(st.one_of(
                st.tuples(st.floats(0, 0.99), st.floats(0, 0.999)),
                st.tuples(real_values(), real_values()),
                st.sampled_from([0.9, (0.9,), (0.9, 0.99, 0.999), "ab", None, [0.8, 0.9]])),
                label=key)
            b = kw[key]
            if not (isinstance(b, (tuple, list)) and len(b) == 2
                    and all(real_in(x, 0, 1, high_open=True) for x in b)):
                bad += ["betas", "beta1", "beta2"]
        else:
            kw[key] = data.draw(st.one_of(st.floats(0, 0.5), real_values()), label=key)
            high = 1 if key == "decay" else None
            if not real_in(kw[key], low=0, high=high, high_open=key == "decay", dtype=np.float64):
                bad.append(key)
    if kind == "SGD" and kw.get("nesterov") and not kw.get("momentum", 0) \
            and "momentum" not in bad:
        bad += ["nesterov", "momentum"]
    if kind == "Adam" and kw.get("eps_form") == "sklearn" and kw.get("amsgrad"):
        bad += ["amsgrad", "eps_form"]
    call = f"bpcore.{kind}({pkind}, " + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    note(call)
    cls = getattr(bpcore, kind)
    ok, opt = attempt(cls, params, **kw)
    valid = False if bad else (None if gray else True)
    if not judge(ok, opt, valid, bad or names + ["params"], call):
        return
    if pkind not in ("model", "list", "groups"):
        return
    # two steps against NumPy
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    ps = model.parameters()
    w = [p.data.copy() for p in ps]
    state = [{"m": np.zeros_like(x), "v": np.zeros_like(x), "vmax": np.zeros_like(x), "vel":
              np.zeros_like(x)} for x in w]
    for t in (1, 2):
        grads = [rng.standard_normal(p.shape) for p in ps]
        for p, g in zip(ps, grads):
            p.grad[...] = g
        lrs = []
        for i, (p, g) in enumerate(zip(ps, grads)):
            group = next(gr for gr in opt.param_groups if any(q is p for q in gr["params"]))
            f = {k: float(v) for k, v in group.items() if k != "params"}  # Python floats: NumPy
            lrs.append(f["lr"])                                          # scalars would round
            with np.errstate(over="ignore", invalid="ignore"):
                if kind == "SGD":
                    s = SGDSpec(f["lr"], f["momentum"], bool(group["nesterov"]),
                                f["weight_decay"], f["decay"])
                    w[i], state[i]["vel"] = ref_sgd_update(w[i], g, state[i]["vel"], s)
                else:
                    w[i] = ref_adam(w[i], g, state[i], t, f["lr"], f["beta1"], f["beta2"],
                                    f["eps"], f["weight_decay"], kind == "AdamW",
                                    bool(opt.amsgrad), opt.eps_form == "sklearn")
        overflow = not all(np.isfinite(x).all() for x in w)
        ok, res = attempt(opt.step)
        if overflow:  # documented: NonFiniteError for an update that overflows
            judge(ok, res, None, ["step"], f"{call}.step() {t}", (bpcore.NonFiniteError,))
            return
        if not ok:
            raise AssertionError(f"{call}.step() {t} raised {res!r}")
        for i, p in enumerate(ps):
            with np.errstate(over="ignore", invalid="ignore"):
                check_close(p.data, w[i], 1e-10 * (np.abs(w[i]) + 1) * (1 + lrs[i]) + 1e-300,
                            f"{call}.step() {t} on {p!r}")


@given(data=st.data())
@counted
def test_clip_grad_norm(data):
    """clip_grad_norm(params, max_norm): returns the global norm and scales as
    torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6)), or raises naming
    the argument."""
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    model = bpcore.MLP(data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=3)),
                       dtype=dtype, seed=0)
    mag = data.draw(st.sampled_from(["small", "wide", "tiny", "huge"]))
    for p in model.parameters():
        p.grad[...] = data.draw(numbers_array(p.shape, dtype=dtype, magnitude=mag))
    g0 = [p.grad.astype(np.float64).copy() for p in model.parameters()]
    pkind = data.draw(st.sampled_from(["model", "list", "one", "junk", "empty"]), label="params")
    params = {"model": lambda: model, "list": model.parameters,
              "one": lambda: model.parameters()[:1], "junk": lambda: [np.zeros(2)],
              "empty": lambda: []}[pkind]()
    max_norm = data.draw(st.one_of(st.floats(1e-3, 100), real_values()), label="max_norm")
    bad = (["params"] if pkind in ("junk", "empty") else []) + \
        ([] if real_in(max_norm, low=0, low_open=True) else ["max_norm"])
    ok, norm = attempt(bpcore.clip_grad_norm, params, max_norm)
    call = f"bpcore.clip_grad_norm({pkind}, {max_norm!r})"
    if not judge(ok, norm, False if bad else True, bad or ["max_norm"], call):
        return
    used = g0 if pkind != "one" else g0[:1]
    # the norm without overflow for finite gradients (math.hypot scales), as bpcore's
    want = math.hypot(*(float(v) for g in used for v in np.ravel(g)))
    assert norm == pytest.approx(want, rel=1e-10 if dtype == "float64" else 1e-6), (norm, want)
    coef = float(max_norm) / (want + 1e-6)
    rtol = RTOL[np.dtype(dtype)]
    # the coefficient rounded to the dtype (as torch does): subnormal when the norm is huge
    coef_err = float(np.finfo(dtype).smallest_subnormal)
    for p, g in zip(model.parameters()[:len(used)], used):
        expect = g * coef if coef < 1 and math.isfinite(want) else g
        check_close(p.grad, expect, rtol * np.abs(expect) + np.abs(g) * coef_err
                    + float(np.finfo(dtype).tiny) * 4, f"{call}: gradient")


@given(data=st.data())
@counted
def test_lbfgs_settings(data):
    """LBFGS(max_iter, tol, max_fun, history): junk raises naming the setting."""
    kw, bad = {}, []
    for key in ("max_iter", "tol", "max_fun", "history"):
        if data.draw(st.booleans()):
            kw[key] = data.draw(real_values() if key == "tol" else int_values(), label=key)
            good = real_in(kw[key], low=0) if key == "tol" else is_int(kw[key], 1)
            if not good:
                bad.append(key)
    call = "bpcore.LBFGS(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    ok, res = attempt(bpcore.LBFGS, **kw)
    judge(ok, res, False if bad else True, bad or ["max_iter"], call)


@given(data=st.data())
@counted
def test_parameter_assignment(data):
    """Assigning a layer's W/b, a network's flat_params/flat_grads: copies a matching finite
    array into the buffer (which stays the same object), or raises naming the attribute."""
    spec = data.draw(net_specs(max_width=3), label="net")
    model = spec.build()
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)][0]
    target = data.draw(st.sampled_from(["W", "b", "dW", "db", "flat_params", "flat_grads"]))
    owner = model if target.startswith("flat") else dense
    cur = getattr(owner, target)
    kind = data.draw(st.sampled_from(["same", "same", "dtype", "shape", "nonfinite", "list",
                                      "junk"]))
    if kind == "same":
        value = data.draw(hnp.arrays(cur.dtype, cur.shape, elements=st.floats(-2, 2, width=32)))
    elif kind == "dtype":
        value = cur.astype(data.draw(st.sampled_from(["int64", "float16", "complex128",
                                                       "float32" if cur.dtype == np.float64
                                                       else "float64"])))
    elif kind == "shape":
        value = np.zeros(cur.size + 1, cur.dtype) if cur.ndim == 1 else cur.T.copy()
        if value.shape == cur.shape:
            value = np.zeros(cur.shape + (1,), cur.dtype)
    elif kind == "nonfinite":
        value = cur.copy()
        value.reshape(-1)[0] = np.nan
    elif kind == "list":
        value = cur.tolist()
    else:
        value = data.draw(st.sampled_from([None, "x", 3.0]))
    note(f"{target} = {value!r}")
    before = cur.copy()
    ok, res = attempt(setattr, owner, target, value)
    valid = {"same": True, "dtype": False, "shape": False, "junk": False,
             "nonfinite": None if target in ("dW", "db", "flat_grads") else False,
             "list": True if cur.dtype == np.float64 else None}[kind]
    if not judge(ok, res, valid, [target], f"{target} = {value!r}"):
        np.testing.assert_array_equal(getattr(owner, target), before)
        return
    assert getattr(owner, target) is cur
    np.testing.assert_array_equal(cur, np.asarray(value, cur.dtype))


# =============================================================================================
# properties: data helpers
# =============================================================================================

@given(data=st.data())
@counted
def test_one_hot(data):
    """one_hot(labels, n_classes, dtype) equals np.eye(n_classes)[labels], or raises naming
    the argument."""
    c = data.draw(st.one_of(st.integers(1, 5), int_values()), label="n_classes")
    good_c = is_int(c, 1)
    cc = int(c) if good_c and c <= 5 else 3
    if good_c and c > 5:
        c = cc
    n = data.draw(st.integers(0, 5))
    y = data.draw(targets("xent", n, cc, SAFE_FORMS), label="labels")
    dtype = data.draw(st.sampled_from(["float32", "float64", np.float32, "int32", None, "x"]),
                      label="dtype")
    bad = [] if good_c else ["n_classes"]
    v = y.values
    lvalid = isinstance(v, np.ndarray) and v.ndim == 1 and \
        target_validity("xent", Arg(v, v, ""), len(v), cc, np.float64)[1] == "labels"
    if not lvalid:
        bad.append("labels")
    if dtype not in ("float32", "float64", np.float32):
        bad.append("dtype")
    call = f"bpcore.one_hot({y!r}, {c!r}, dtype={dtype!r})"
    note(call)
    ok, res = attempt(bpcore.one_hot, y.obj, c, dtype=dtype)
    if not judge(ok, res, False if bad else True, bad or ["labels"], call):
        return
    assert res.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(res, np.eye(c)[np.asarray(y.values).astype(np.intp)])


IDX_DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64", ">i2", ">f8", "<i4"]


@given(data=st.data())
@counted
def test_idx_roundtrip(data):
    """write_idx then read_idx gives the array back (shape, values, native dtype), gzipped or
    not; arrays IDX cannot store are refused naming `array`."""
    kind = data.draw(st.sampled_from(["ok"] * 6 + ["dtype", "scalar", "object"]))
    if kind == "ok":
        shape = tuple(data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=4)))
        a = data.draw(numbers_array(shape, dtype=data.draw(st.sampled_from(IDX_DTYPES)),
                                    magnitude=data.draw(st.sampled_from(["small", "wide",
                                                                         "nonfinite"]))))
        form = data.draw(st.sampled_from(["c", "fortran", "strided", "list"]))
        obj, _, code = in_form(a, form, data.draw)
        if form == "list":
            a = np.asarray(obj)
            if a.dtype.str[1:] not in ("f8", "u1", "i1", "i2", "i4", "f4"):
                return
    elif kind == "scalar":
        a = np.array(data.draw(st.integers(0, 255)), np.uint8)
        obj, code = a, _array_code(a)
    elif kind == "dtype":
        a = np.zeros((2, 2), data.draw(st.sampled_from(["int64", "bool", "float16", "uint16",
                                                         "complex64", "U1"])))
        obj, code = a, f"np.zeros((2, 2), {a.dtype.str!r})"
    else:
        obj, code = [[1, 2], [3]], "[[1, 2], [3]]"
    compress = data.draw(st.sampled_from([None, True, False]), label="compress")
    suffix = data.draw(st.sampled_from(["", ".gz"]))
    path = os.path.join(_memmap_dir(), f"roundtrip.idx{suffix}")
    call = f"bpcore.write_idx({path!r}, {code}, compress={compress!r})"
    note(call)
    ok, res = attempt(bpcore.write_idx, path, obj, compress=compress)
    valid = kind == "ok" or (None if kind == "scalar" else False)
    if not judge(ok, res, valid, ["array"], call):
        return
    ok, back = attempt(bpcore.read_idx, path)
    if not ok:
        raise AssertionError(f"{call}: wrote a file read_idx refuses: {back!r}")
    want = np.asarray(obj)
    assert back.shape == want.shape and back.dtype == want.dtype.newbyteorder("="), \
        (back.shape, back.dtype, want.shape, want.dtype)
    assert back.dtype.isnative and back.flags.c_contiguous
    np.testing.assert_array_equal(back, want)


# =============================================================================================
# risky properties: run in child processes
# =============================================================================================

@given(data=st.data())
@counted
def risky_odd_arrays(data):
    """Every array entry point (Dense, activations, forward/backward, predict, losses,
    evaluate, train_step, fit) with strided, Fortran, negative-stride, broadcast, read-only,
    memory-mapped and big-endian arrays, and broadcast arrays of 2**31 rows or columns."""
    check = data.draw(st.sampled_from([check_predict, check_network_forward_backward,
                                       check_dense_layer, check_activation, check_losses,
                                       check_evaluate, check_train_step_arguments,
                                       check_fit_arguments]), label="entry point")
    check(data, ALL_FORMS)


@given(data=st.data())
@counted
def risky_huge_sizes(data):
    """MLP/Dense with layer sizes up to 2**31 - 1 (and beyond): builds (when it fits in
    memory) or raises naming the size -- never crashes or exhausts memory."""
    big = st.sampled_from([2**31 - 1, 2**31, 2**30, 10**6, 65536, 2**33, 2**62])
    which = data.draw(st.sampled_from(["mlp", "dense"]))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    if which == "mlp":
        sizes = data.draw(st.lists(st.one_of(st.integers(1, 4), big), min_size=2, max_size=3))
        call = f"bpcore.MLP({sizes!r}, dtype={dtype!r})"
        fn = lambda: bpcore.MLP(sizes, dtype=dtype, seed=0)  # noqa: E731
        names = ["sizes"]
        n = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        fits = all(s <= INT_MAX for s in sizes) and n * np.dtype(dtype).itemsize * 2 < 2**29
    else:
        fi, fo = data.draw(st.one_of(st.integers(1, 4), big)), data.draw(st.one_of(st.integers(1, 4), big))
        call = f"bpcore.Dense({fi}, {fo}, dtype={dtype!r})"
        fn = lambda: bpcore.Dense(fi, fo, dtype=dtype, seed=0)  # noqa: E731
        names = ["fan_in", "fan_out"]
        fits = fi <= INT_MAX and fo <= INT_MAX and (fi * fo + fo) * np.dtype(dtype).itemsize * 2 < 2**29
    note(call)
    _log_detail(call)
    ok, res = attempt(fn)
    judge(ok, res, True if fits else None, names, call)


@given(data=st.data())
@counted
def risky_threads(data):
    """set_num_threads(n) / num_threads(n) with every kind of n: valid n sets the count and
    training still matches one thread to round-off; junk raises naming n; in a fork child,
    n > 1 is refused (RuntimeError, as documented) and work runs on one thread, without hang."""
    from bpcore.threads import max_threads
    n = data.draw(st.one_of(st.integers(1, max_threads()), int_values(),
                            st.sampled_from([max_threads() + 1, 0, -1, 2**31, 2**64])), label="n")
    how = data.draw(st.sampled_from(["set", "set", "context", "fork"]), label="how")
    valid = is_int(n, 1, max_threads())
    model = bpcore.MLP([5, 7, 3], seed=1, dtype="float64")
    X = np.random.default_rng(0).standard_normal((64, 5))
    y = np.arange(64) % 3
    bpcore.set_num_threads(1)
    want = model.predict(X)
    before = bpcore.get_num_threads()
    _log_detail(f"{how} n={n!r}")
    if how == "fork":
        _fork_check(n, valid, model, X, want)
        return
    if how == "set":
        ok, res = attempt(bpcore.set_num_threads, n)
        if not judge(ok, res, valid, ["n"], f"set_num_threads({n!r})"):
            assert bpcore.get_num_threads() == before
            return
        assert 1 <= bpcore.get_num_threads() <= int(n)
        got = model.predict(X)
        loss = model.train_step(X, y, bpcore.SoftmaxCrossEntropyLoss(), bpcore.SGD(model, lr=0.1))
        assert math.isfinite(loss)
        bpcore.set_num_threads(1)
    else:
        try:
            with bpcore.num_threads(n) as k:
                assert valid, f"num_threads({n!r}) accepted"
                assert 1 <= bpcore.get_num_threads() <= int(n) and k == int(n)
                got = model.predict(X)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001
            judge(False, exc, valid, ["n"], f"num_threads({n!r})")
            assert bpcore.get_num_threads() == before
            return
        assert bpcore.get_num_threads() == before
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def _fork_check(n, valid, model, X, want):
    bpcore.set_num_threads(2)
    model.predict(X)  # the parent's OpenMP threads have started
    pid = os.fork()
    if pid == 0:  # the fork child: exit code tells the parent what happened
        code = 0
        try:
            ok, res = attempt(bpcore.set_num_threads, n)
            if ok and not (valid and int(n) == 1):
                code = 3  # accepted n > 1 (or junk) in a fork child
            elif not ok and valid and int(n) == 1:
                code = 4
            elif not ok and not isinstance(res, (ValueError, TypeError, RuntimeError)):
                code = 5
            elif not ok and not _names_in(str(res), ["n"]):
                code = 6
            if not np.allclose(model.predict(X), want, rtol=1e-12, atol=1e-14):
                code = 7
        except BaseException:  # noqa: BLE001
            code = 8
        os._exit(code)
    import time
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"fork child hung (set_num_threads({n!r}) then predict)")
        time.sleep(0.01)
    bpcore.set_num_threads(1)
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, {3: f"set_num_threads({n!r}) accepted in a fork child",
                       4: "set_num_threads(1) refused in a fork child",
                       5: f"set_num_threads({n!r}) raised an unexpected type in a fork child",
                       6: "fork child's error does not name n",
                       7: "predict in a fork child differs", 8: "fork child raised"}.get(
        code, f"fork child died with {code}")


def _idx_bytes(draw):
    """(bytes of an IDX file -- valid, damaged or random --, gzip it?, how it was made)."""
    kind = draw(st.sampled_from(["valid", "flip", "truncate", "append", "header", "random",
                                 "prefix", "dims", "empty_dims"]))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    dt = np.dtype(draw(st.sampled_from(IDX_DTYPES[:6])))
    a = draw(numbers_array(shape, dtype=dt.str, magnitude="small"))
    code = {"u1": 8, "i1": 9, "i2": 11, "i4": 12, "f4": 13, "f8": 14}[dt.str[1:]]
    body = bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes() + \
        a.astype(dt.newbyteorder(">")).tobytes()
    if kind == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ (1 << draw(st.integers(0, 7)))]) + body[i + 1:]
    elif kind == "truncate":
        body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    elif kind == "append":
        body = body + draw(st.binary(min_size=1, max_size=8))
    elif kind == "header":
        body = draw(st.binary(min_size=4, max_size=4)) + body[4:]
    elif kind == "random":
        body = draw(st.binary(max_size=64))
    elif kind == "prefix":
        body = bytes([0, 0, draw(st.sampled_from([8, 9, 11, 12, 13, 14, 0, 255])),
                      draw(st.integers(0, 255))]) + draw(st.binary(max_size=40))
    elif kind == "dims":
        dims = draw(st.lists(st.sampled_from([0, 1, 2, 2**31, 2**32 - 1, 65536]), min_size=1,
                             max_size=6))
        body = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + \
            draw(st.binary(max_size=16))
    elif kind == "empty_dims":  # no data at all: one dimension 0, the others up to 2**32 - 1
        dims = draw(st.lists(st.sampled_from([1, 3, 2**16, 2**31, 2**32 - 1]), min_size=1,
                             max_size=4))
        dims.insert(draw(st.integers(0, len(dims))), 0)
        body = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    gz = draw(st.sampled_from([False, False, True, "damaged", "concat"]))
    if gz:
        body = gzip.compress(body, mtime=0)
        if gz == "damaged":
            i = draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        elif gz == "concat":
            body = body + gzip.compress(draw(st.binary(max_size=8)), mtime=0)
    return body, gz, kind


@given(data=st.data())
@counted
def risky_read_idx(data):
    """read_idx on random, truncated, bit-flipped, header-damaged and gzip-damaged files:
    raises FileFormatError naming the path, or returns the array that write_idx turns back
    into the same (decompressed) bytes."""
    body, gz, kind = _idx_bytes(data.draw)
    path = os.path.join(_memmap_dir(), "case.idx")
    with open(path, "wb") as fh:
        fh.write(body)
    note(f"file bytes ({kind}, gzip={gz}): {body!r}")
    _log_detail(f"read_idx of {body!r}")
    ok, res = attempt(bpcore.read_idx, path)
    if not ok:
        assert_named_error(res, [path], f"read_idx of {body!r}", (bpcore.FileFormatError,))
        return
    raw = body
    if gz:
        try:
            raw = gzip.decompress(body)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"read_idx accepted a gzip file Python's gzip refuses "
                                 f"({exc!r}): {body!r} -> {res!r}") from None
    out = os.path.join(_memmap_dir(), "back.idx")
    bpcore.write_idx(out, res, compress=False)
    with open(out, "rb") as fh:
        again = fh.read()
    assert again == raw, f"read_idx gave {res!r} for {raw!r}, which writes back as {again!r}"


def _write_safetensors(path, tensors, metadata):
    """A plain safetensors file (no bpcore checksum): what other writers produce."""
    header, offset, chunks = {}, 0, []
    for name, (tag, shape, blob) in tensors.items():
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        chunks.append(blob)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + b"".join(chunks))


@st.composite
def fuzzed_architectures(draw):
    """A network's architecture (as bpcore's metadata describes it), valid or mutated."""
    widths = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3))
    layers = []
    for fi, fo in zip(widths, widths[1:]):
        layers.append({"type": "dense", "fan_in": fi, "fan_out": fo, "mask": draw(st.booleans())})
        if draw(st.booleans()):
            layers.append({"type": draw(st.sampled_from(ACTS))})
    spec = {"dtype": draw(st.sampled_from(["float32", "float64"])), "layers": layers}
    if draw(st.booleans()):
        spec["mlp"] = {"sizes": widths, "activation": "relu", "output_activation": None}
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["dtype", "type", "size", "drop", "mlp", "extra", "junk"]))
        junk = draw(st.sampled_from([None, -1, 0, 2**31, 2**40, 1.5, "3", [], {}, True, "float16",
                                     "int32", "nan"]))
        if what == "dtype":
            spec["dtype"] = junk
        elif what == "type" and layers:
            draw(st.sampled_from(layers))["type"] = draw(st.sampled_from(
                [junk, "softmax", "dense", "relu"]))
        elif what == "size" and layers:
            layer = draw(st.sampled_from(layers))
            layer[draw(st.sampled_from(["fan_in", "fan_out", "mask"]))] = junk
        elif what == "drop":
            key = draw(st.sampled_from(["dtype", "layers", "mlp"]))
            spec.pop(key, None)
        elif what == "mlp":
            spec["mlp"] = draw(st.sampled_from([junk, {"sizes": junk}, {"sizes": widths,
                                                "activation": junk, "output_activation": None}]))
        elif what == "extra":
            spec["layers"] = junk if draw(st.booleans()) else layers + [junk]
        else:
            return junk
    return spec


def _tensors_for(spec, draw):
    """Tensors matching spec as far as it can be read (sizes drawn near the right ones)."""
    tensors = {}
    layers = spec.get("layers") if isinstance(spec, dict) else None
    dt = spec.get("dtype") if isinstance(spec, dict) else None
    tag = "F64" if dt == "float64" else "F32"
    for i, layer in enumerate(layers if isinstance(layers, list) else []):
        if not isinstance(layer, dict) or layer.get("type") != "dense":
            continue
        fi, fo = layer.get("fan_in"), layer.get("fan_out")
        if not (isinstance(fi, int) and isinstance(fo, int) and 0 < fi < 8 and 0 < fo < 8):
            fi, fo = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if draw(st.integers(0, 5)) == 0:
            fo += 1
        mtag = draw(st.sampled_from([tag, tag, tag, "I32", "F64"]))
        for name, shape, t in ((f"layers.{i}.W", (fi, fo), tag), (f"layers.{i}.b", (fo,), tag),
                               (f"layers.{i}.mask", (fi, fo), mtag)):
            if name.endswith("mask") and not layer.get("mask"):
                continue
            size = int(np.prod(shape))
            dtype = {"F32": "<f4", "F64": "<f8", "I32": "<i4"}[t]
            if name.endswith("mask"):
                vals = draw(hnp.arrays(np.int8, (size,), elements=st.sampled_from([0, 1, 1, 2])))
            else:
                vals = draw(hnp.arrays(np.float64, (size,), elements=st.one_of(
                    st.floats(-2, 2), st.sampled_from([math.nan, math.inf, 1e300]))))
            tensors[name] = (t, shape, vals.astype(dtype).tobytes())
    return tensors


def _checkpoint_bytes(draw, with_optimizer_possible=True):
    """(bytes of a checkpoint -- bpcore's own, damaged, or a plain safetensors/.npz with a
    fuzzed architecture --, how it was made, whether it must be refused)."""
    kind = draw(st.sampled_from(["valid", "flip", "flip", "truncate", "append", "splice",
                                 "random", "plain", "plain", "npz", "npz", "header",
                                 "plain_values"]))
    tmp = os.path.join(_memmap_dir(), "made.safetensors")
    if kind in ("valid", "flip", "truncate", "append", "splice", "header"):
        spec = draw(net_specs(max_width=3))
        model = spec.build()
        opt = draw(st.sampled_from([None, "sgd", "adam"]))
        optimizer = {None: None, "sgd": lambda: bpcore.SGD(model, lr=0.1, momentum=0.9),
                     "adam": lambda: bpcore.Adam(model)}[opt]
        model.save(tmp, optimizer=optimizer() if optimizer else None)
        with open(tmp, "rb") as fh:
            body = fh.read()
        must_fail = kind != "valid"
        if kind == "flip":
            i = draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ (1 << draw(st.integers(0, 7)))]) + body[i + 1:]
        elif kind == "truncate":
            body = body[:draw(st.integers(0, len(body) - 1))]
        elif kind == "append":
            body = body + draw(st.binary(min_size=1, max_size=16))
        elif kind == "splice":
            i = draw(st.integers(0, len(body) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            new = body[:i] + chunk + body[i + len(chunk):]
            must_fail = new != body
            body = new
        elif kind == "header":  # a header length field that lies
            n = draw(st.sampled_from([0, 1, 2, 2**32, 2**63, 2**64 - 1, len(body)]))
            body = struct.pack("<Q", n) + body[8:]
            must_fail = body[:8] != open(tmp, "rb").read()[:8]
        return body, f"{kind} of {spec!r}", must_fail
    if kind == "plain_values":  # a network's own tensors, unchecksummed, some values edited
        spec = draw(net_specs(max_width=3))
        model = spec.build()
        from bpcore.model import describe
        arch = describe(model)
        tensors = {}
        for i, m in enumerate(model.layers):
            if isinstance(m, bpcore.Dense):
                for name, arr in ((f"layers.{i}.W", m.W), (f"layers.{i}.b", m.b),
                                  (f"layers.{i}.mask", m.mask)):
                    if arr is None:
                        continue
                    arr = np.array(arr)
                    if draw(st.booleans()) and not name.endswith("mask"):
                        arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = draw(
                            st.sampled_from([math.nan, math.inf, -math.inf, 1e30]))
                    tag = "F32" if arr.dtype == np.float32 else "F64"
                    tensors[name] = (tag, arr.shape, arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        metadata = {"format": "bpcore-network-2", "architecture": json.dumps(arch),
                    "dtype": arch["dtype"]}
        _write_safetensors(tmp, tensors, metadata)
        with open(tmp, "rb") as fh:
            return fh.read(), f"plain safetensors of {spec!r}, values edited", None
    if kind == "random":
        prefix = draw(st.sampled_from([b"", b"PK\x03\x04", struct.pack("<Q", 2) + b"{}",
                                       struct.pack("<Q", 8) + b"{}      "]))
        return prefix + draw(st.binary(max_size=64)), "random bytes", None
    spec = draw(fuzzed_architectures())
    if kind == "plain":
        metadata = {"format": "bpcore-network-2", "architecture": json.dumps(spec)}
        if draw(st.integers(0, 4)) == 0:
            metadata = draw(st.sampled_from([{}, {"format": "x"}, {"format": 3},
                                             {"format": "bpcore-network-2", "architecture": "{"},
                                             None]))
        _write_safetensors(tmp, _tensors_for(spec, draw), metadata)
        with open(tmp, "rb") as fh:
            return fh.read(), f"plain safetensors, architecture {spec!r}", None
    # bpcore 0.1's .npz: spec JSON (with its format) and the flat parameters
    npz_spec = dict(spec, format="bpcore-network-1") if isinstance(spec, dict) else spec
    n = draw(st.integers(0, 40))
    flat = draw(st.sampled_from([np.zeros(n), np.zeros((2, n)), np.array(["a"] * n),
                                 np.zeros(n, np.int64), np.zeros(n, np.float32)]))
    arrays = {"spec": np.array(json.dumps(npz_spec)), "flat_params": flat}
    if draw(st.booleans()):
        arrays[f"mask{draw(st.integers(0, 3))}"] = draw(st.sampled_from(
            [np.ones((2, 2)), np.zeros(3), np.array([[0, 1], [2, 1]])]))
    if draw(st.integers(0, 5)) == 0:
        arrays.pop(draw(st.sampled_from(["spec", "flat_params"])))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), f"npz with spec {npz_spec!r}, flat {flat.shape} {flat.dtype}, " \
        f"keys {sorted(arrays)}", None


@given(data=st.data())
@counted
def risky_load_checkpoint(data):
    """bpcore.load on random bytes, bit-flipped / truncated / extended / spliced checkpoints,
    lying header lengths, plain safetensors and .npz files with fuzzed architectures: raises
    CheckpointError naming the path, or (never for a damaged bpcore file) returns a network
    whose weights are the file's and that predicts."""
    body, how, must_fail = _checkpoint_bytes(data.draw)
    suffix = ".npz" if how.startswith("npz") else ".safetensors"
    path = os.path.join(_memmap_dir(), "case" + suffix)
    with open(path, "wb") as fh:
        fh.write(body)
    note(f"{how}: {body[:400]!r}{'...' if len(body) > 400 else ''}")
    _log_detail(f"load of {how}")
    ok, res = attempt(bpcore.load, path)
    if not ok:
        assert_named_error(res, [path], f"load of {how}", (bpcore.CheckpointError,))
        return
    if must_fail:
        raise AssertionError(f"load accepted a damaged checkpoint ({how})")
    model = res
    assert isinstance(model, bpcore.Sequential)
    X = np.linspace(-1, 1, 3 * model.n_inputs).reshape(3, model.n_inputs)
    out = model.predict(X)
    assert out.shape == (3, model.n_outputs)
    assert np.isfinite(model.flat_params).all(), "load gave non-finite weights"
    if "optimizer" not in how and must_fail is False:
        return


@given(data=st.data())
@counted
def risky_load_optimizer(data):
    """bpcore.load_optimizer(path, optimizer) on damaged checkpoints: CheckpointError (or a
    ValueError naming the state) -- or, for an intact file, the optimizer's state restored."""
    body, how, must_fail = _checkpoint_bytes(data.draw)
    if how.startswith("npz"):
        return
    path = os.path.join(_memmap_dir(), "opt.safetensors")
    with open(path, "wb") as fh:
        fh.write(body)
    note(f"{how}: {body[:400]!r}")
    ok, model = attempt(bpcore.load, path)
    if not ok:
        model = bpcore.MLP([2, 2], seed=0)
    kind = data.draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    opt = {"SGD": lambda: bpcore.SGD(model, lr=0.1, momentum=0.9), "Adam": lambda: bpcore.Adam(model),
           "AdamW": lambda: bpcore.AdamW(model)}[kind]()
    _log_detail(f"load_optimizer of {how} into {kind}")
    ok, res = attempt(bpcore.load_optimizer, path, opt)
    if not ok:
        names = [path, "state", "optimizer", "steps"]
        assert_named_error(res, names, f"load_optimizer of {how} into {kind}")
        return
    if must_fail:
        raise AssertionError(f"load_optimizer accepted a damaged checkpoint ({how})")
    assert res is opt


# odd paths; none of them names a file outside the test's own folder that could be written
# (the writing entry points get a FIFO in that folder instead of "/dev/null" or "/")
PATHS = st.sampled_from([None, 3, 0, 1, 2, -1, 1.5, ["a"], b"/nonexistent/x", "",
                         "/nonexistent/dir/f", "<dir>", "<fifo>", "<missing>", "bad\0name",
                         2**70, "/dev/null"])


@given(data=st.data())
@counted
def risky_file_arguments(data):
    """read_idx(path), write_idx(path, array, compress), bpcore.load(path),
    load_optimizer(path, optimizer), model.save(path, optimizer) with odd paths (None, ints --
    file descriptors to open() --, bytes, "", folders, NUL bytes, a FIFO) and junk optimizers:
    a TypeError/ValueError (CheckpointError, FileFormatError) naming the argument, or the
    documented FileNotFoundError / OSError for a missing or unwritable file. Writing onto a
    path that is not a regular file (a FIFO here; /dev/null for root) must not replace it."""
    fn = data.draw(st.sampled_from(["read_idx", "write_idx", "load", "load_optimizer", "save"]))
    path = data.draw(PATHS, label="path")
    folder = tempfile.mkdtemp(dir=_memmap_dir())
    writes = fn in ("write_idx", "save")
    if path == "/dev/null" and fn == "save":
        path = "<fifo>"  # save renames onto its path: never /dev/null
    if path == "<fifo>" and fn == "write_idx":
        path = "/dev/null"  # opening a FIFO to write waits for a reader: /dev/null instead
    if path == "<dir>":
        path = folder
    elif path == "<missing>":
        path = os.path.join(folder, "missing.bin")
    elif path == "<fifo>":
        path = os.path.join(folder, "fifo")
        os.mkfifo(path)
        if not writes:
            path = os.path.join(folder, "missing.bin")  # opening a FIFO to read waits for a writer
    model = bpcore.MLP([2, 2], seed=0)
    good = os.path.join(_memmap_dir(), "args.safetensors")
    model.save(good, optimizer=bpcore.SGD(model, lr=0.1, momentum=0.9))
    optimizer = None
    if fn in ("load_optimizer", "save"):
        okind = data.draw(st.sampled_from(["sgd", "adam", "junk", "none"]), label="optimizer")
        optimizer = {"sgd": lambda: bpcore.SGD(model, lr=0.1, momentum=0.9),
                     "adam": lambda: bpcore.Adam(model), "none": lambda: None,
                     "junk": lambda: data.draw(st.sampled_from(["opt", 3, {}, model]))}[okind]()
        if fn == "load_optimizer" and data.draw(st.booleans()):
            path = good
    special = isinstance(path, str) and path.endswith("fifo") and os.path.exists(path)
    path_ok = isinstance(path, (str, os.PathLike)) and path != "" \
        and (path != "/dev/null" or fn == "write_idx") \
        and "\0" not in path and not path.startswith("/nonexistent") and path != folder \
        and not special
    call = f"{fn}({path!r}" + (f", optimizer={optimizer!r})" if fn in ("load_optimizer", "save")
                                else ")")
    note(call)
    _log_detail(call)
    names = ["path", str(path)]
    if fn == "read_idx":
        ok, res = attempt(bpcore.read_idx, path)
    elif fn == "write_idx":
        ok, res = attempt(bpcore.write_idx, path, np.zeros(3, np.uint8),
                          compress=data.draw(st.sampled_from([None, True, 0, "no"])))
    elif fn == "load":
        ok, res = attempt(bpcore.load, path)
    elif fn == "load_optimizer":
        ok, res = attempt(bpcore.load_optimizer, path, optimizer)
        names += ["optimizer", "state"]
    else:
        ok, res = attempt(model.save, path, optimizer=optimizer)
        names += ["optimizer"]
    if special:
        import stat
        assert stat.S_ISFIFO(os.lstat(path).st_mode), \
            f"{call} replaced the FIFO at {path!r} by a regular file"
    if ok:
        assert writes or fn == "load_optimizer", f"{call} returned {res!r}"
        assert path_ok or path == good or special, f"{call} accepted path {path!r}"
        if fn == "save" or (fn == "load_optimizer" and optimizer is not None):
            assert isinstance(optimizer, (bpcore.Optimizer, type(None))), \
                f"{call} accepted optimizer {optimizer!r}"
        return
    if isinstance(res, (FileNotFoundError, IsADirectoryError, PermissionError,
                        NotADirectoryError)) and isinstance(path, (str, bytes)):
        return  # documented: a missing file / folder propagates as the OS reports it
    assert_named_error(res, names, call)


@given(data=st.data())
@counted
def risky_save_onto_special_file(data):
    """model.save(path) where path is a FIFO (the safe stand-in for /dev/null, which a save
    run as root replaces): refused naming the path, or written without replacing the FIFO
    (the atomic rename must not clobber a file that is not a regular file)."""
    import stat
    folder = tempfile.mkdtemp(dir=_memmap_dir())
    path = os.path.join(folder, data.draw(st.sampled_from(["fifo", "fifo.safetensors"])))
    os.mkfifo(path)
    spec = data.draw(net_specs(max_width=3), label="net")
    model = spec.build()
    opt = data.draw(st.sampled_from([None, "sgd"]), label="optimizer")
    call = f"{spec!r}.save(<a FIFO>, optimizer={opt})"
    note(call)
    _log_detail(call)
    ok, res = attempt(model.save, path, optimizer=bpcore.SGD(model) if opt else None)
    assert stat.S_ISFIFO(os.lstat(path).st_mode), f"{call} replaced the FIFO by a regular file"
    if not ok and not isinstance(res, OSError):
        assert_named_error(res, ["path", path], call)


RISKY = {f.__name__[len("risky_"):]: f for f in (
    risky_save_onto_special_file,
    risky_odd_arrays, risky_huge_sizes, risky_threads, risky_read_idx, risky_load_checkpoint,
    risky_load_optimizer, risky_file_arguments)}

# the share of the profile's examples each child runs (they are slower per case)
RISKY_SHARE = {"odd_arrays": 3.0, "huge_sizes": 0.5, "threads": 0.5, "read_idx": 2.0,
               "load_checkpoint": 2.0, "load_optimizer": 1.0, "file_arguments": 1.0,
               "save_onto_special_file": 0.2}

_CHILD = r"""
import faulthandler, json, os, resource, sys
faulthandler.enable()
cfg = json.loads(sys.argv[1])
from hypothesis import HealthCheck, settings
settings.register_profile("child", max_examples=cfg["max_examples"],
                          derandomize=cfg["derandomize"], deadline=None, database=None,
                          print_blob=True, suppress_health_check=list(HealthCheck),
                          **({} if cfg["shrink"] else {"phases": ["explicit", "reuse",
                                                                   "generate"]}))
settings.load_profile("child")
sys.path.append(cfg["tests_dir"])
import test_fuzz
sys.exit(test_fuzz._child_main(cfg))
"""


def _child_main(cfg):
    """Run one risky property in this (child) process; 0 if it held."""
    global _CASE_LOG
    import resource
    _CASE_LOG = cfg["case_log"]
    # a generous cap on address space: a runaway allocation fails here, not on the machine
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize"))
    limit = vm + cfg["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    name = cfg["name"]
    try:
        RISKY[name]()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        print(f"FUZZ-CASES {name} {CASES['risky_' + name]}", flush=True)
        return 1
    print(f"FUZZ-CASES {name} {CASES['risky_' + name]}", flush=True)
    return 0


def _subprocess_param(name, finding=None):
    marks = [pytest.mark.xfail(reason=f"finding: {finding}", strict=True)] if finding else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [
    _subprocess_param("odd_arrays"),
    _subprocess_param("huge_sizes"),
    _subprocess_param("threads"),
    _subprocess_param("read_idx"),
    _subprocess_param("load_checkpoint"),
    _subprocess_param("load_optimizer"),
    _subprocess_param("file_arguments"),
    _subprocess_param("save_onto_special_file"),
])
def test_in_subprocess(name, tmp_path, request):
    """The risky properties, each in its own child process: a crash (negative return code), a
    hang (timeout) or a failed property fails this test with the child's report."""
    base = settings.default.max_examples
    cfg = {"name": name, "max_examples": max(5, int(base * RISKY_SHARE[name])),
           "derandomize": settings.default.derandomize, "tests_dir": TESTS_DIR,
           "case_log": str(tmp_path / "case.txt"), "memory_mb": 3072,
           "shrink": request.node.get_closest_marker("xfail") is None}
    timeout = 90 + cfg["max_examples"]
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        last = _read(tmp_path / "case.txt")
        pytest.fail(f"child {name} hung (no exit within {timeout} s); last case:\n{last}\n"
                    f"output:\n{(exc.stdout or '')[-3000:]}{(exc.stderr or '')[-3000:]}")
    out = proc.stdout + proc.stderr
    m = re.search(rf"FUZZ-CASES {name} (\d+)", out)
    if m:
        CASES["subprocess: " + name] += int(m.group(1))
    if proc.returncode != 0:
        why = (f"crashed with signal {-proc.returncode}" if proc.returncode < 0
               else f"exited {proc.returncode}")
        pytest.fail(f"child {name} {why}; last case:\n{_read(tmp_path / 'case.txt')}\n"
                    f"output (tail):\n{out[-6000:]}", pytrace=False)


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return "(none)"
