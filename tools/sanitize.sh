#!/usr/bin/env bash
# Memory and undefined-behaviour checks of bpcore's native modules, on Linux with GCC (the ASan
# runtime is found with `cc -print-file-name`; Clang is untried).
#
#   tools/sanitize.sh [--asan-only | --valgrind-only] [--quick] [--venv DIR] [--keep]
#                     [SOURCE_DIR] [-- PYTEST_ARGS...]
#
# 1. ASan + UBSan: bpcore built with BPCORE_SANITIZE=address,undefined (setup.py: every module
#    compiled with -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g and linked with
#    -fsanitize=address,undefined; Cython's boundscheck, wraparound and initializedcheck on),
#    then the test suite with the ASan runtime (and libstdc++) preloaded into the uninstrumented
#    python (LD_PRELOAD, inherited by the tests' child processes). A self-test first proves the
#    set-up live (a double free and a signed overflow must each stop a process). Any report
#    fails the pass: ASan's (halt_on_error; written per process to files, so a child's report is
#    not lost in a test's captured stderr) and UBSan's (halt_on_error; on stderr, exit code 87).
#    Leak detection is off (CPython frees little at exit); valgrind checks leaks.
#    tests/test_memory_growth.py is left out: RSS grows under ASan by design (see below).
# 2. valgrind: a plain build (the usual -O3, with -g), then `valgrind --tool=memcheck
#    --leak-check=full --errors-for-leak-kinds=definite --track-origins=yes` on a short training
#    run (layer API; train_step at batch 1, row-split and batch-split, 1 and 2 threads, clipped;
#    fit with SGD, AdamW and a schedule; Adam/AMSGrad; L-BFGS; predict, evaluate, save, load and
#    load_optimizer; float32 and float64) with PYTHONMALLOC=malloc. Any invalid read or write,
#    uninitialised value, bad free or definite leak with a frame in one of bpcore's modules in
#    any of its stacks (where, allocated, freed, origin) fails the pass; the rest (CPython's
#    objects lost at exit, other extension modules' import-time allocations) is counted by
#    library and shown. Three suppressions, for noise whose whole context is outside bpcore:
#    ld.so's strncmp over-read and CPython 3.11's maybe_small_long (see below).

# SOURCE_DIR (default: this script's repository) is copied (for a git work tree: tracked and
# untracked, not ignored, files, uncommitted changes included) and built in the copy; the tree
# itself, its in-place build and any environment given by --venv are never written to.
#
# Options:
#   --asan-only       only the ASan/UBSan pass        --valgrind-only  only the valgrind pass
#   --quick           the native-heavy test files only (QUICK_TESTS below); valgrind: float32
#                     only, no L-BFGS (about half the valgrind run: scipy.optimize is not imported)
#   --venv DIR        use the packages of the virtual environment DIR (build tools, numpy, scipy,
#                     test extras) instead of installing them into a fresh one; DIR is not
#                     modified (a new environment in the work folder sees DIR's site-packages
#                     through a .pth file, and bpcore is installed there, ahead of DIR's)
#   --keep            keep the work folder (also KEEP_WORK=1)
#   -- PYTEST_ARGS    passed on to pytest in the ASan pass (e.g. -- -k engine)
# Environment: PYTHON (interpreter for a fresh environment, default python3),
# BPCORE_CHECK_TORCH=0 (a fresh environment without torch: the parity tests skip),
# VALGRIND_ARGS (more valgrind options). valgrind is installed with apt-get when missing (root).
set -euo pipefail

START=$SECONDS
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=${PYTHON:-python3}
SANITIZERS=address,undefined
# --quick: the test files that drive the native code hardest (engine paths, kernels, BLAS
# wrappers, optimizers, gradients, bad input, threads, checkpoints)
QUICK_TESTS="test_engine.py test_blas.py test_gradcheck.py test_optimizers.py test_bad_input.py
test_threads.py test_checkpoint.py test_reference.py test_api.py test_nonfinite.py
test_concurrency.py test_fuzz.py"
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYTHONSTARTUP BPCORE_SANITIZE BPCORE_DEBUG

DO_ASAN=1 DO_VALGRIND=1 QUICK=0 BASE_VENV="" KEEP=${KEEP_WORK:-0} SOURCE="" PYTEST_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --asan-only) DO_VALGRIND=0 ;;
        --valgrind-only) DO_ASAN=0 ;;
        --quick) QUICK=1 ;;
        --venv) BASE_VENV=$(cd "${2:?--venv needs a folder}" && pwd); shift ;;
        --venv=*) BASE_VENV=$(cd "${1#--venv=}" && pwd) ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        -*) echo "sanitize: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) SOURCE=$1 ;;
    esac
    shift
done
[ "$DO_ASAN$DO_VALGRIND" != 00 ] || { echo "sanitize: --asan-only and --valgrind-only exclude each other" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bpcore-sanitize.XXXXXX")
SUMMARY=()
cleanup() {
    local rc=$?
    if [ "$KEEP" = 1 ]; then echo "sanitize: kept $WORK"; else rm -rf "$WORK"; fi
    if [ ${#SUMMARY[@]} -gt 0 ]; then printf '%s\n' "${SUMMARY[@]}"; fi
    if [ $rc -ne 0 ]; then echo "sanitize: FAILED (exit $rc) after $((SECONDS - START)) s" >&2; fi
}
trap cleanup EXIT

section() { printf '\n==================== %s ====================\n' "$*"; }
fail() { echo "sanitize: FAILED: $*" >&2; exit 1; }
pipq() {  # pip without this machine's warnings about absent local index folders
    local rc=0
    "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } || rc=$?
    return $rc
}

# a copy of the source tree in $1 (what check_wheel.sh copies: no build outputs)
copy_source() {
    local orig=$1 dest=$2
    mkdir -p "$dest"
    if git -C "$orig" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
        # shellcheck disable=SC2016
        (cd "$orig" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
            | tar --null -T - -cf -) | tar -xf - -C "$dest"
    else
        (cd "$orig" && tar --exclude=build --exclude='*.so' --exclude='bpcore/*.c' \
            --exclude='*.egg-info' -cf - .) | tar -xf - -C "$dest"
    fi
}

# ---------------------------------------------------------------------------------------------
section "0. source and environment"
ORIG=$(cd "${SOURCE:-$REPO}" && pwd)
[ -f "$ORIG/setup.py" ] && [ -d "$ORIG/bpcore" ] || fail "$ORIG is not a bpcore source tree"
if git -C "$ORIG" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    echo "source: $ORIG (git HEAD $(git -C "$ORIG" rev-parse --short HEAD), uncommitted changes" \
         "included), copied to $WORK"
else
    echo "source: $ORIG, copied to $WORK"
fi
V=$WORK/venv
if [ -n "$BASE_VENV" ]; then
    [ -x "$BASE_VENV/bin/python" ] || fail "--venv $BASE_VENV: no bin/python"
    # the build runs without isolation: DIR must hold the build tools (a venv made by
    # `pip install .` alone does not: pip keeps them in its isolated build environment)
    "$BASE_VENV/bin/python" -c "import Cython, setuptools, numpy, scipy" 2>/dev/null \
        || fail "--venv $BASE_VENV: expected the build requirements (Cython, setuptools, numpy, scipy) installed there; pip install 'Cython>=3.0' 'setuptools>=77'"
    # no pip or setuptools of its own (ensurepip's setuptools would shadow DIR's): DIR's pip,
    # setuptools, Cython, numpy, ... through the .pth file below
    "$BASE_VENV/bin/python" -m venv --without-pip "$V"
    # DIR's site-packages after the new environment's own, so the bpcore installed here comes
    # first; `python -S` (a test's "no site-packages" child) sees neither
    site=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    "$BASE_VENV/bin/python" -c "
import sysconfig
paths = sysconfig.get_paths()
print('\n'.join(dict.fromkeys([paths['purelib'], paths['platlib']])))" > "$site/_bpcore_sanitize_base.pth"
    echo "environment: $V over the packages of $BASE_VENV"
else
    "$PY" -m venv "$V"
    pipq "$V/bin/python" -m pip install -q --upgrade pip
    # pyproject.toml's build requirements and [test] extras (bpcore itself is built later)
    mapfile -t REQS < <("$V/bin/python" - "$ORIG/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
try:
    import tomllib
    data = tomllib.loads(text)
    reqs = data["build-system"]["requires"] + data["project"]["optional-dependencies"]["test"]
except ImportError:  # Python 3.10: the two one-line lists
    reqs = [r for key in ("requires", "test") for r in re.findall(
        r'"([^"]+)"', re.search(rf"^{key}\s*=\s*\[(.*)\]", text, re.M).group(1))]
print("\n".join(reqs))
EOF
)
    pipq "$V/bin/python" -m pip install -q "${REQS[@]}"
    if [ "${BPCORE_CHECK_TORCH:-1}" != 0 ]; then
        pipq "$V/bin/python" -m pip install -q torch \
            || echo "(torch not installable here: the PyTorch parity tests will skip)"
    fi
    echo "environment: fresh $V"
fi
"$V/bin/python" --version
"$V/bin/python" -m pip list 2>/dev/null | grep -iE '^(cython|numpy|scipy|setuptools|pytest|torch) ' || true
RUN=$WORK/run  # copies of tests/ and the folders tests load from ../; no bpcore/ beside them
mkdir -p "$RUN"
for d in tests benchmarks examples README.md; do  # test_readme reads ../README.md
    if [ -e "$ORIG/$d" ]; then cp -r "$ORIG/$d" "$RUN/"; fi
done

# install the tree copied to $1 into the environment (nothing else: --no-deps), built with the
# caller's BPCORE_* variables; pip builds in the copy, so build/ and the .c files stay there
install_bpcore() {
    local src=$1 log=$2
    pipq "$V/bin/python" -m pip install --no-build-isolation --force-reinstall --no-deps -v "$src" \
        > "$log" 2>&1 || { tail -n 60 "$log"; fail "building bpcore (log: $log)"; }
    grep -E 'bpcore: (building with OpenMP|sanitizer build)|no working OpenMP' "$log" \
        | awk '!seen[$0]++' || true
}

# the native modules of the installed bpcore
native_modules() {
    (cd "$RUN" && "$V/bin/python" -c "
import glob, os, importlib.util
d = os.path.dirname(importlib.util.find_spec('bpcore').origin)
print('\n'.join(sorted(glob.glob(os.path.join(d, '_*.so')))))")
}

# ---------------------------------------------------------------------------------------------
if [ "$DO_ASAN" = 1 ]; then
    section "1. ASan + UBSan build (BPCORE_SANITIZE=$SANITIZERS) and the test suite"
    T0=$SECONDS
    case "$(cc --version 2>/dev/null | head -n 1)" in
        *clang*) LIBASAN=$(cc -print-file-name=libclang_rt.asan-x86_64.so) ;;
        *) LIBASAN=$(cc -print-file-name=libasan.so) ;;
    esac
    [ -f "$LIBASAN" ] || fail "no ASan runtime found (cc -print-file-name: $LIBASAN)"
    # libstdc++ preloaded too: ASan's C++ exception interceptor needs it there from the start,
    # or the first exception thrown by a C++ extension the tests load (matplotlib's ft2font,
    # torch) stops the process ("CHECK failed ... real___cxa_throw")
    PRELOAD=$LIBASAN
    LIBSTDCXX=$(cc -print-file-name=libstdc++.so.6)
    if [ -f "$LIBSTDCXX" ]; then PRELOAD="$LIBASAN $(readlink -f "$LIBSTDCXX")"; fi
    copy_source "$ORIG" "$WORK/src-asan"
    BPCORE_SANITIZE=$SANITIZERS install_bpcore "$WORK/src-asan" "$WORK/build-asan.log"
    grep -q 'bpcore: sanitizer build' "$WORK/build-asan.log" \
        || fail "the build did not take BPCORE_SANITIZE (setup.py too old?)"
    for so in $(native_modules); do
        readelf -d "$so" | grep -q 'NEEDED.*libasan' \
            || fail "$(basename "$so") is not linked against the ASan runtime"
    done
    echo "$(native_modules | wc -l) native modules built with -fsanitize=$SANITIZERS;" \
         "preloaded: $PRELOAD ($((SECONDS - T0)) s to build)"

    # tests/test_memory_growth.py measures the process's RSS over long runs: under ASan freed
    # blocks wait in its quarantine (256 MB) and the shadow memory grows with use, so the RSS
    # grows by design there; ASan finds what that file looks for (and valgrind the leaks)
    TESTS=(tests --ignore=tests/test_memory_growth.py)
    if [ "$QUICK" = 1 ]; then
        TESTS=(--ignore=tests/test_memory_growth.py)
        for t in $QUICK_TESTS; do [ -f "$RUN/tests/$t" ] && TESTS+=("tests/$t"); done
    fi
    LOGS=$WORK/sanitizer-reports
    mkdir -p "$LOGS"
    # detect_leaks=0: CPython (uninstrumented, not ASan-aware) frees little at exit;
    # allocator_may_return_null=1: an impossible allocation (the bad-input tests ask for some)
    # is NULL, i.e. MemoryError, as without ASan; log_path: ASan's reports from every process in
    # files, children included (a test that captures a child's stderr could hide them). UBSan's
    # reports (GCC: printed by the ASan runtime, which ignores log_path for them) go to stderr;
    # halt_on_error stops the process with exit code 87, so pytest or the test of a child fails.
    ASAN_BASE="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:exitcode=86"
    export ASAN_OPTIONS="$ASAN_BASE:log_path=$LOGS/asan"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87"
    # the sanitizers are live in this set-up: a double free and a signed overflow in a module
    # built with the same flags must each stop a process with a report
    printf 'int bp_selftest(int x) { return x + 2147483647; }\n' > "$WORK/ub.c"
    cc -fsanitize=$SANITIZERS -fno-omit-frame-pointer -O1 -g -shared -fPIC "$WORK/ub.c" \
        -o "$WORK/ub.so"
    rc=0
    LD_PRELOAD=$PRELOAD ASAN_OPTIONS="$ASAN_BASE:log_path=$WORK/selftest" \
        "$V/bin/python" -c "
import ctypes
c = ctypes.CDLL(None)
c.malloc.restype, c.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
p = c.malloc(8); c.free(p); c.free(p)" 2> /dev/null || rc=$?
    [ $rc = 86 ] && grep -q 'double-free' "$WORK"/selftest.* \
        || fail "self-test: ASan did not report a double free (exit $rc)"
    rc=0
    LD_PRELOAD=$PRELOAD "$V/bin/python" -c "
import ctypes, sys
ctypes.CDLL(sys.argv[1]).bp_selftest(5)" "$WORK/ub.so" 2> "$WORK/selftest-ubsan" || rc=$?
    [ $rc = 87 ] && grep -q 'runtime error: signed integer overflow' "$WORK/selftest-ubsan" \
        || fail "self-test: UBSan did not stop a signed overflow (exit $rc)"
    echo "self-test: ASan stops a double free (exit 86), UBSan a signed overflow (exit 87)"

    T1=$SECONDS
    rc=0
    (cd "$RUN" && LD_PRELOAD=$PRELOAD "$V/bin/python" -m pytest -p no:cacheprovider -ra \
        "${TESTS[@]}" "${PYTEST_EXTRA[@]}" > "$WORK/pytest-asan.log" 2>&1) || rc=$?
    unset ASAN_OPTIONS UBSAN_OPTIONS
    ASAN_TIME=$((SECONDS - T1))
    grep -E '^(bpcore |SKIPPED|XFAIL|FAILED|ERROR|=+ .*(passed|failed|error))' \
        "$WORK/pytest-asan.log" || true
    # a report is an error; with allocator_may_return_null, ASan also writes a WARNING for
    # each impossible allocation it refused (the bad-input and fuzz tests ask for some): shown,
    # not failed
    reports=$(grep -lE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|CHECK failed' \
        -r "$LOGS" | sort || true)
    warned=$({ grep -rhc 'WARNING: AddressSanitizer failed to allocate' "$LOGS" || true; } \
        | awk '{n += $1} END {print n + 0}')
    if [ "$warned" -gt 0 ]; then
        echo "ASan refused $warned impossible allocations (NULL returned, as asked)"
    fi
    if [ -n "$reports" ]; then
        for f in $reports; do echo "--- $f"; cat "$f"; done
        fail "ASan reports (above)"
    fi
    others=$(grep -LE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|CHECK failed' \
        -r "$LOGS" | xargs -r grep -hv 'WARNING: AddressSanitizer failed to allocate' || true)
    if [ -n "$others" ]; then echo "other ASan output:"; echo "$others" | head -n 40; fi
    if grep -qE 'runtime error:|ERROR: AddressSanitizer' "$WORK/pytest-asan.log"; then
        grep -nE -A 30 'runtime error:|ERROR: AddressSanitizer' "$WORK/pytest-asan.log" | head -n 200
        fail "sanitizer reports in the test log (above; pytest exit $rc)"
    fi
    if [ $rc -ne 0 ]; then
        tail -n 80 "$WORK/pytest-asan.log"
        fail "the test suite under ASan/UBSan (pytest exit $rc; no sanitizer report: see" \
             "whether these tests fail in a plain build too)"
    fi
    SUMMARY+=("asan+ubsan: $(grep -E '^=+ .*(passed|failed)' "$WORK/pytest-asan.log" | tail -n 1 \
        | tr -d '=' | sed 's/^ *//; s/ *$//'), no sanitizer report; tests ${ASAN_TIME} s," \
        "whole pass $((SECONDS - T0)) s")
fi

# ---------------------------------------------------------------------------------------------
if [ "$DO_VALGRIND" = 1 ]; then
    section "2. valgrind memcheck on a short training run (plain build)"
    T0=$SECONDS
    if ! command -v valgrind > /dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            echo "installing valgrind (apt-get)"
            apt-get install -y -q valgrind > "$WORK/apt.log" 2>&1 \
                || { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q valgrind \
                     > "$WORK/apt.log" 2>&1; } || { tail "$WORK/apt.log"; fail "apt-get install valgrind"; }
        else
            fail "valgrind is not installed (apt-get install valgrind, or --asan-only)"
        fi
    fi
    valgrind --version
    copy_source "$ORIG" "$WORK/src-plain"
    # the normal build (Python's CFLAGS already hold -g; said again in case they do not)
    CFLAGS="${CFLAGS:-} -g" install_bpcore "$WORK/src-plain" "$WORK/build-plain.log"
    if grep -q 'sanitizer build' "$WORK/build-plain.log"; then fail "the plain build is sanitized"; fi
    echo "plain build: $((SECONDS - T0)) s"

    cat > "$WORK/train.py" <<'EOF'
"""A short training run for valgrind: every native path once or twice, small sizes."""
import os
import sys
import tempfile

import numpy as np

import bpcore

quick = len(sys.argv) > 1 and sys.argv[1] == "quick"
rng = np.random.default_rng(0)
folder = tempfile.mkdtemp()
for dtype in ("float32",) if quick else ("float32", "float64"):
    X = rng.standard_normal((150, 12)).astype(dtype)
    labels = rng.integers(0, 4, 150)
    Y = rng.standard_normal((150, 3)).astype(dtype)
    ce, mse = bpcore.SoftmaxCrossEntropyLoss(), bpcore.MSELoss()
    # layer API: forward, backward (input gradient too), an optimizer step
    model = bpcore.MLP([12, 16, 8, 4], activation="relu", dtype=dtype, seed=1)
    opt = bpcore.SGD(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    model.zero_grad()
    ce(model.forward(X[:20]), labels[:20])
    model.backward(ce.backward(), input_grad=True)
    opt.step()
    # fused steps: batch of one, row-split and batch-split, 1 and 2 threads, clipping
    for threads in (1, 2):
        with bpcore.num_threads(threads):
            for rows in (1, 7, 150):
                model.train_step(X[:rows], labels[:rows], ce, opt)
            model.train_step(X[:40], labels[:40], ce, opt, max_grad_norm=0.5)
    model.fit(X, labels, loss=ce, optimizer=opt, epochs=2, batch_size=32, seed=0,
              validation_data=(X[:30], labels[:30]))
    # Adam / AdamW (groups), MSE, other activations, a schedule and clipping in fit
    reg = bpcore.MLP([12, 10, 3], activation="tanh", dtype=dtype, seed=2)
    weights = [p for p in reg.parameters() if p.name == "W"]
    biases = [p for p in reg.parameters() if p.name == "b"]
    adamw = bpcore.AdamW([{"params": weights, "weight_decay": 1e-2},
                          {"params": biases, "weight_decay": 0.0}], lr=1e-3)
    reg.fit(X, Y, loss=mse, optimizer=adamw, epochs=2, batch_size=16, seed=1,
            schedule=bpcore.schedules.CosineAnnealingLR(T_max=2), max_grad_norm=1.0)
    sig = bpcore.MLP([12, 6, 3], activation="sigmoid", dtype=dtype, seed=3)
    adam = bpcore.Adam(sig, lr=1e-2, amsgrad=True)
    sig.train_step(X[:9], Y[:9], mse, adam)
    bpcore.clip_grad_norm(sig.parameters(), 1.0)
    if not quick:
        bpcore.MLP([12, 5, 4], dtype=dtype, seed=4).fit(
            X, labels, loss=ce, optimizer=bpcore.LBFGS(max_iter=5))
    # predict, evaluate, save and load (with the optimizer's state)
    out = model.predict(X)
    assert out.shape == (150, 4) and np.isfinite(out).all()
    model.evaluate(X, labels, ce)
    path = os.path.join(folder, f"model-{dtype}.safetensors")
    reg.save(path, optimizer=adamw)
    back = bpcore.load(path)
    assert np.array_equal(back.predict(X), reg.predict(X))
    bpcore.load_optimizer(path, bpcore.AdamW(
        [{"params": [p for p in back.parameters() if p.name == "W"], "weight_decay": 1e-2},
         {"params": [p for p in back.parameters() if p.name == "b"], "weight_decay": 0.0}]))
    del model, reg, sig, back, opt, adam, adamw
print("training run: done")
EOF
    # Suppressions, for noise outside bpcore whose whole context shows it: glibc's dynamic
    # loader (its word-wise strncmp reads past the end of an rpath string, inside ld.so) and
    # CPython 3.11's maybe_small_long, which branches on the unset digit of a new zero-size int
    # (the root of the uninitialised values CPython reports from its start-up on; later uses of
    # that value elsewhere in libpython remain and are sorted out below).
    cat > "$WORK/noise.supp" <<'EOF'
{
   ld.so-strncmp-rpath
   Memcheck:Addr8
   fun:strncmp
   fun:is_dst
}
{
   cpython311-maybe-small-long-cond
   Memcheck:Cond
   fun:maybe_small_long
}
{
   cpython311-maybe-small-long-value
   Memcheck:Value8
   fun:Py_INCREF
   fun:get_small_int
   fun:maybe_small_long
}
EOF
    # The verdict: an error counts as bpcore's when any of its stacks (where it happened, the
    # block's allocation or free, the origin of an uninitialised value) has a frame in one of
    # bpcore's modules or sources; only those fail the pass. The others (CPython's objects lost
    # at exit, other extension modules' start-up allocations, ...) are counted by library.
    cat > "$WORK/verdict.py" <<'EOF'
"""Sort valgrind's XML errors into bpcore's and others; exit 1 if any is bpcore's."""
import collections
import re
import sys
import xml.etree.ElementTree as ET

BPCORE_SO = re.compile(r"/bpcore/_[a-z_]+(\.[^/]*)?\.so$")
BPCORE_SRC = re.compile(r"^(_[a-z_]+\.(c|pyx|pxd)|bp_[a-z_]+\.[ch])$")


def frames(err):
    for stack in err.iter("stack"):
        for f in stack.iter("frame"):
            yield {k: (f.findtext(k) or "") for k in ("obj", "fn", "dir", "file", "line")}


def is_bpcore(fr):
    d = fr["dir"].replace("\\", "/")
    return bool(BPCORE_SO.search(fr["obj"])) or (
        bool(BPCORE_SRC.match(fr["file"])) and d.endswith(("/bpcore", "/csrc")))


def where(fr):
    loc = f"{fr['file']}:{fr['line']}" if fr["file"] else fr["obj"].rsplit("/", 1)[-1]
    return f"{fr['fn'] or '?'} ({loc})"


root = ET.parse(sys.argv[1]).getroot()
mine, others = [], collections.Counter()
for err in root.iter("error"):
    kind = err.findtext("kind")
    what = err.findtext("what") or err.findtext("xwhat/text") or ""
    fs = list(frames(err))
    if any(is_bpcore(f) for f in fs):
        mine.append((kind, what, err))
    else:
        top = next((f for f in fs if not re.search(r"vgpreload|/libc\.so", f["obj"])), None)
        others[(kind, top["obj"].rsplit("/", 1)[-1] if top else "?")] += 1
for kind, what, err in mine:
    print(f"BPCORE {kind}: {what}")
    for child in err:  # the stacks in order, each after the line that says what it is
        if child.tag == "auxwhat":
            print(f"  {child.text}")
        for f in child.iter("frame") if child.tag == "stack" else ():
            fr = {k: (f.findtext(k) or "") for k in ("obj", "fn", "dir", "file", "line")}
            print(f"    {where(fr)}{'   <-- bpcore' if is_bpcore(fr) else ''}")
n = sum(others.values())
print(f"valgrind: {len(mine)} error(s) with a frame in bpcore's modules; {n} elsewhere"
      + (", none of them with a bpcore frame in any stack:" if n else ""))
for (kind, lib), count in others.most_common():
    print(f"  {count:6d} {kind} in {lib}")
sys.exit(1 if mine else 0)
EOF
    VLOG=$WORK/valgrind.log
    T1=$SECONDS
    rc=0
    # PYTHONMALLOC=malloc: Python's own allocator off, so valgrind sees every block;
    # OMP_WAIT_POLICY=passive: idle OpenMP threads sleep instead of spinning (valgrind runs one
    # thread at a time); --track-origins: the allocation behind an uninitialised value
    (cd "$RUN" && PYTHONMALLOC=malloc OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 \
        valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
        --show-leak-kinds=definite --errors-for-leak-kinds=definite --track-origins=yes \
        --num-callers=40 --suppressions="$WORK/noise.supp" --log-file="$VLOG" \
        --xml=yes --xml-file="$WORK/valgrind.xml" ${VALGRIND_ARGS:-} \
        "$V/bin/python" "$WORK/train.py" "$([ "$QUICK" = 1 ] && echo quick || echo full)") \
        || rc=$?
    VALGRIND_TIME=$((SECONDS - T1))
    [ $rc = 0 ] || [ $rc = 99 ] \
        || { tail -n 30 "$VLOG"; fail "the training run under valgrind (exit $rc)"; }
    vrc=0
    "$V/bin/python" "$WORK/verdict.py" "$WORK/valgrind.xml" > "$WORK/verdict.txt" || vrc=$?
    if [ $vrc -ne 0 ]; then
        head -n 300 "$WORK/verdict.txt"
        fail "valgrind: errors in bpcore's modules (above; all errors in $WORK/valgrind.xml," \
             "kept with --keep)"
    fi
    cat "$WORK/verdict.txt"
    SUMMARY+=("valgrind: $(tail -n +1 "$WORK/verdict.txt" | grep '^valgrind:' | sed 's/,.*//;s/^valgrind: //')" \
        "in a ${VALGRIND_TIME} s training run; whole pass $((SECONDS - T0)) s")
fi

section "summary"
echo "sanitize: OK in $((SECONDS - START)) s"
