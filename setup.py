"""Build the native modules of bpcore.

Environment variables:
  BPCORE_FAIL_NO_OPENMP=1  make a missing OpenMP a build error instead of a warning
                           (wheel builds set it, so no wheel ships single-threaded by accident).
  BPCORE_DEBUG=1           Cython bounds/wraparound checks on, -O0 -g: for hunting memory bugs.
  BPCORE_SANITIZE=LIST     GCC sanitizers, e.g. address,undefined (see sanitize_flags below;
                           tools/sanitize.sh builds and tests with it).
  BPCORE_LIBOMP_PREFIX=DIR macOS: build with the libomp in DIR (include/omp.h, lib/libomp.dylib);
                           wheel builds point it at a pinned libomp (tools/macos_libomp.sh).
                           Unset: Homebrew's libomp if installed, else CPPFLAGS/LDFLAGS.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ["_spin", "_threads", "_simd", "_blas", "_layers", "_losses", "_optim", "_rng", "_engine", "_bench"]
# compiled without OpenMP: _spin runs before the OpenMP runtime is loaded (it sizes its wait)
NO_OPENMP = {"_spin"}
# plain C compiled into a module beside its .pyx
C_SOURCES = {"_simd": ["csrc/bp_simd.c", "csrc/bp_gemm.c"]}
C_HEADERS = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(HERE, "csrc"))
                   if f.endswith(".h"))
# GCC and Clang: sqrt without errno, so the optimizers' loops vectorise, and no floating-point
# traps assumed (bpcore never enables them), so a select between two computed values (LeakyReLU
# and its derivative) vectorises instead of branching; IEEE results unchanged, no -ffast-math
GNU_FLAGS = {"_simd": ["-fno-math-errno", "-fno-trapping-math"]}

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n > 0 ? 0 : 1;
}
"""


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def openmp_flags(compiler_type):
    """The (compile, link) flags that turn on OpenMP for this compiler and platform."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag; it needs libomp (Homebrew or a pinned build)
        # whose prefix comes from BPCORE_LIBOMP_PREFIX (or CPPFLAGS/LDFLAGS). The rpath lets
        # the probe run against a libomp outside the default search path; delocate then copies
        # that libomp into the wheel.
        prefix = os.environ.get("BPCORE_LIBOMP_PREFIX", "").strip() or _homebrew_libomp()
        if prefix:
            return (["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                    [f"-L{prefix}/lib", "-lomp", f"-Wl,-rpath,{prefix}/lib"])
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _homebrew_libomp():
    """Homebrew's libomp prefix (keg-only, so not on the default paths), or None."""
    for prefix in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
        if os.path.exists(os.path.join(prefix, "include", "omp.h")):
            return prefix
    return None


def probe_openmp(compiler, cflags, ldflags):
    """Compile, link and run a tiny OpenMP program; True only if all three succeed."""
    tmp = tempfile.mkdtemp(prefix="bpcore-omp-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with open("probe.c", "w") as f:
            f.write(OPENMP_PROBE)
        objects = compiler.compile(["probe.c"], output_dir=tmp, extra_postargs=cflags)
        exe = os.path.join(tmp, "probe" + (".exe" if sys.platform == "win32" else ""))
        compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=ldflags)
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and int(out.stdout.strip() or 0) >= 1
    except Exception as exc:  # any failure means: no usable OpenMP
        print(f"bpcore: OpenMP probe failed: {exc}", file=sys.stderr)
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


# --- sanitizer builds (tools/sanitize.sh) ------------------------------------------------------
# BPCORE_SANITIZE=address,undefined (any list -fsanitize= takes; GCC, Clang untried): every
# module is compiled with -fsanitize=LIST -fno-omit-frame-pointer -O1 -g and linked with the same
# sanitizer flags, Cython's boundscheck, wraparound and initializedcheck are on, and the modules
# are re-cythonized and rebuilt even if up to date. Python itself is not instrumented: load the
# runtime first, e.g. LD_PRELOAD=$(gcc -print-file-name=libasan.so). Build in a copy of the tree
# (as tools/sanitize.sh does): the generated .c files and in-place .so files it leaves are not
# rebuilt by a later plain build unless forced (`build_ext --force`). Unset: no effect at all.
SANITIZE = os.environ.get("BPCORE_SANITIZE", "").strip()


def sanitize_flags(compiler_type):
    """The (compile, link) flags BPCORE_SANITIZE adds after all others (its -O1 wins)."""
    if compiler_type == "msvc":
        raise RuntimeError("BPCORE_SANITIZE is for GCC and Clang builds only")
    flags = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer"]
    return flags + ["-O1", "-g"], flags
# --- end of sanitizer builds -------------------------------------------------------------------


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # the modules compile independently: one per core (a newcomer's first install waits
        # for this build)
        if not self.parallel:
            self.parallel = os.cpu_count() or 1
        if SANITIZE:
            self.force = True

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        cflags, ldflags = openmp_flags(ctype)
        has_openmp = probe_openmp(self.compiler, cflags, ldflags)
        if not has_openmp:
            msg = "bpcore: no working OpenMP found; building single-threaded elementwise loops."
            if _flag("BPCORE_FAIL_NO_OPENMP"):
                raise RuntimeError(msg + " (BPCORE_FAIL_NO_OPENMP=1 forbids that)")
            print("WARNING: " + msg, file=sys.stderr)
            cflags, ldflags = [], []
        else:
            print(f"bpcore: building with OpenMP ({' '.join(cflags)})", file=sys.stderr)

        if ctype == "msvc":
            opt = ["/Od", "/Zi"] if _flag("BPCORE_DEBUG") else ["/O2"]
        else:
            # -O3 for the vectoriser on the elementwise loops; never -march=native or -ffast-math
            # here: wheels run on CPUs other than the build machine and rely on IEEE semantics.
            opt = ["-O0", "-g"] if _flag("BPCORE_DEBUG") else ["-O3"]
        for ext in self.extensions:
            if ctype != "msvc":
                ext.extra_compile_args += GNU_FLAGS.get(ext.name.split(".")[-1], [])
            plain = ext.name.split(".")[-1] in NO_OPENMP
            ext.extra_compile_args = opt + ([] if plain else cflags) + ext.extra_compile_args
            ext.extra_link_args = ([] if plain else ldflags) + ext.extra_link_args
        if SANITIZE:
            san_cflags, san_ldflags = sanitize_flags(ctype)
            print(f"bpcore: sanitizer build ({' '.join(san_cflags)})", file=sys.stderr)
            for ext in self.extensions:
                ext.extra_compile_args += san_cflags
                ext.extra_link_args += san_ldflags
        super().build_extensions()


def extensions():
    import numpy
    from Cython.Build import cythonize

    debug = _flag("BPCORE_DEBUG") or bool(SANITIZE)  # the checks are on in sanitizer builds too
    exts = [
        Extension(
            f"bpcore.{name}",
            [os.path.join("bpcore", f"{name}.pyx")] + C_SOURCES.get(name, []),
            include_dirs=[os.path.join(HERE, "csrc"), numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            # an in-place rebuild recompiles a module when a header it may include changed
            depends=C_HEADERS,
        )
        for name in MODULES
    ]
    return cythonize(
        exts,
        nthreads=os.cpu_count() or 1,
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
            "embedsignature": True,
        },
        include_path=[os.path.join(HERE, "bpcore")],
        force=True if SANITIZE else None,  # None: the default (CYTHON_FORCE_REGEN)
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
