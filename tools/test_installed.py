"""Tests what users install (`make test-installed`, part of `make test` and so of .ci/run).

The wheel goes into a fresh venv outside the checkout with numpy and the extras named on the
command line (torch from a local wheel when one is given), then, with the Swift toolchain off
PATH (PATH=<venv>/bin:/usr/bin:/bin):
  1. `trmask --version` and `trmask demo`, as a user would run them;
  2. the Python suite (python/tests) against the installed package, once per CPU variant this
     machine runs (TRMASK_VARIANT), the others reported as skipped with the reason; conftest.py
     checks that the tests import the installed trmask, not python/trmask;
  3. examples/c/trmask_example.c built with -Wall -Wextra -Werror against the installed header
     (trmask.get_include()) and library (trmask.get_library()), and run; glibc picks the same
     CPU variant as the Python loader (LD_DEBUG=libs).

usage: python3 tools/test_installed.py WHEEL [--extras test,jax] [--torch-wheel PATH] [--post-install SCRIPT]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in command), flush=True)
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def user_environment(venv: Path, **extra: str) -> dict:
    """What a user without the Swift toolchain has: the venv's scripts and the system's tools."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", **extra}
    if shutil.which("swift", path=env["PATH"]) is not None:
        sys.exit(f"test_installed: swift is on {env['PATH']}; this run must not see it")
    return env


def installed_loader(python: Path):
    """The installed package's _loader module, loaded from its file: importing the package would
    load a library, which is what a variant check must not do first."""
    package_dir = subprocess.run([str(python), "-c", "import importlib.util; "
                                  "print(importlib.util.find_spec('trmask').submodule_search_locations[0])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
    spec = importlib.util.spec_from_file_location("installed_trmask_loader", Path(package_dir) / "_loader.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def python_suite(venv: Path, loader, workdir: Path) -> None:
    """pytest once per variant this CPU runs; cwd outside the checkout, so only the installed
    trmask is importable."""
    base = [venv / "bin" / "python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", ROOT / "python" / "tests"]
    if not loader.has_variants():
        run(base, cwd=workdir, env=user_environment(venv, TRMASK_TEST_INSTALLED=str(venv)))
        return
    ran = []
    for variant in loader.VARIANTS:
        reason = loader.unsupported_reason(variant)
        if reason:
            print(f"SKIPPED the Python suite on variant {variant.name}: {reason}", flush=True)
            continue
        print(f"== the Python suite on variant {variant.name} ({variant.isa})", flush=True)
        run(base, cwd=workdir, env=user_environment(venv, TRMASK_TEST_INSTALLED=str(venv), TRMASK_VARIANT=variant.name))
        ran.append(variant.name)
    print(f"Python suite ran on variants: {', '.join(ran)}", flush=True)


def c_example(venv: Path, workdir: Path) -> None:
    env = user_environment(venv)
    paths = subprocess.run([venv / "bin" / "python", "-c", "import trmask; print(trmask.get_include()); "
                            "print(trmask.get_library()); print(trmask.get_library_dir())"],
                           check=True, capture_output=True, text=True, env=env).stdout.split("\n")
    include, library, library_dir = paths[:3]
    binary = workdir / "trmask_example"
    # Linked against the chosen variant; the rpath names _lib, under which glibc picks the variant
    # folder (glibc-hwcaps) this CPU runs, as the Python loader does.
    run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{include}",
         ROOT / "examples" / "c" / "trmask_example.c", f"-L{Path(library).parent}", "-ltrmask",
         f"-Wl,-rpath,{library_dir}", "-lm", "-o", binary], env=env)
    run([binary], env=env)
    # glibc's hwcaps search under the rpath loads the variant the Python loader chose.
    trace = subprocess.run([binary], env={**env, "LD_DEBUG": "libs"}, capture_output=True, text=True, check=True)
    if f"calling init: {library}" not in trace.stderr:
        sys.exit(f"test_installed: the C example did not load {library}:\n{trace.stderr}")
    print(f"the C example loaded {library}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--extras", default="test", help="the wheel's extras to install (comma-separated)")
    parser.add_argument("--torch-wheel", default="", help="a local torch wheel to install first (optional)")
    parser.add_argument("--post-install", default="", help="a script run with the venv's python after the wheel "
                        "is installed (python/verl-test/install: verl for the differential tests)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trmask-installed-") as temp:
        temp = Path(temp)
        venv = temp / "venv"
        run([sys.executable, "-m", "venv", venv])
        pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if args.torch_wheel:
            run(pip + [args.torch_wheel])
        else:
            print("no local torch wheel: the torch tests will be skipped", flush=True)
        run(pip + [f"{args.wheel.resolve()}[{args.extras}]" if args.extras else args.wheel.resolve()])
        if args.post_install:
            run([ROOT / args.post_install, venv / "bin" / "python"])
        env = user_environment(venv)
        run(["trmask", "--version"], env=env, cwd=temp)
        run(["trmask", "demo"], env=env, cwd=temp)
        python_suite(venv, installed_loader(venv / "bin" / "python"), temp)
        c_example(venv, temp)


if __name__ == "__main__":
    main()
