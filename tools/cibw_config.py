"""Check bpcore's [tool.cibuildwheel] configuration without building anything.

Usage: python tools/cibw_config.py [PROJECT_DIR]   (needs cibuildwheel 4.x installed)

For linux, macos and windows: resolve the options the way cibuildwheel does (pyproject.toml
only; CIBW_* variables of the calling shell are ignored), print the selected build identifiers
and each build's environment, and fail unless
  - the identifiers are exactly CPython 3.10-3.13 on the intended platforms and architectures,
  - every build sets BPCORE_FAIL_NO_OPENMP=1,
  - macOS builds point BPCORE_LIBOMP_PREFIX at their own architecture's libomp and set a
    deployment target,
  - every build runs a test command on copied test sources (outside the source tree), and
    those sources exist.
It uses cibuildwheel's option resolution (cibuildwheel.options), not a re-implementation.
"""
import dataclasses
import os
import sys
from pathlib import Path

from cibuildwheel.__main__ import ALL_PLATFORM_MODULES, get_build_identifiers
from cibuildwheel.options import CommandLineArguments, compute_options

PYTHONS = ["cp310", "cp311", "cp312", "cp313"]
EXPECTED = {
    "linux": {f"{py}-{plat}" for py in PYTHONS
              for plat in ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64")},
    "macos": {f"{py}-macosx_{arch}" for py in PYTHONS for arch in ("x86_64", "arm64")},
    "windows": {f"{py}-win_amd64" for py in PYTHONS},
}


def check_platform(platform, project):
    args = dataclasses.replace(CommandLineArguments.defaults(), platform=platform,
                               package_dir=project)
    options = compute_options(platform=platform, command_line_arguments=args,
                              env={"PATH": os.environ.get("PATH", "")})
    ids = list(get_build_identifiers(platform_module=ALL_PLATFORM_MODULES[platform],
                                     build_selector=options.globals.build_selector,
                                     architectures=options.globals.architectures))
    options.check_for_invalid_configuration(ids)
    errors = []
    if set(ids) != EXPECTED[platform]:
        errors.append(f"selected {sorted(ids)}, expected {sorted(EXPECTED[platform])}")
    print(f"{platform}: {len(ids)} builds")
    for ident in ids:
        build = options.build_options(ident)
        env = build.environment.as_dictionary(prev_environment={})
        print(f"  {ident:28s} " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
        if env.get("BPCORE_FAIL_NO_OPENMP") != "1":
            errors.append(f"{ident}: BPCORE_FAIL_NO_OPENMP=1 not set")
        if not build.test_command or "tests" not in build.test_sources:
            errors.append(f"{ident}: no test command on copied tests/")
        errors += [f"{ident}: test source {src} does not exist" for src in build.test_sources
                   if not (project / src).exists()]
        if platform == "macos":
            arch = ident.split("macosx_")[1]
            if not env.get("BPCORE_LIBOMP_PREFIX", "").endswith("/" + arch):
                errors.append(f"{ident}: BPCORE_LIBOMP_PREFIX is not the {arch} libomp")
            if not env.get("MACOSX_DEPLOYMENT_TARGET"):
                errors.append(f"{ident}: no MACOSX_DEPLOYMENT_TARGET")
    first = options.build_options(ids[0]) if ids else None
    if first is not None:
        print(f"  test-command: {first.test_command}")
        print(f"  repair-wheel-command: {first.repair_command}")
        if first.before_all:
            print(f"  before-all: {first.before_all}")
    return errors


def main(argv):
    project = Path(argv[1] if len(argv) > 1 else ".").resolve()
    os.chdir(project)  # cibuildwheel reads ./pyproject.toml of the package dir
    errors = []
    for platform in ("linux", "macos", "windows"):
        errors += [f"{platform}: {e}" for e in check_platform(platform, Path("."))]
    if errors:
        print("cibuildwheel configuration check FAILED:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    print("cibuildwheel configuration: OK (every build expects OpenMP and tests the wheel)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
