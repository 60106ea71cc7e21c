"""Checks a built wheel (`make wheel` runs it): its name and tag, Root-Is-Purelib, the files a user
needs (the libraries of every CPU variant, trmask.h, py.typed, the `trmask` command, the license),
the version against include/trmask.h, and that `auditwheel show` agrees with the platform tag.

usage: python tools/check_wheel.py WHEEL [--same-as OTHER_WHEEL]   (with auditwheel installed)
  --same-as: also require OTHER_WHEEL (e.g. built from the sdist) to have the same name, the same
  files and the same bytes in every file but the libraries (two builds differ in their build ids).
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fail(message: str) -> None:
    sys.exit(f"check_wheel: {message}")


def main(wheel: Path) -> None:
    version = re.search(r'#define TRM_VERSION_STRING "([^"]+)"', (ROOT / "include" / "trmask.h").read_text()).group(1)
    match = re.fullmatch(rf"trmask-{re.escape(version)}-py3-none-(manylinux_2_\d+_(x86_64|aarch64))\.whl", wheel.name)
    if match is None:
        fail(f"{wheel.name}: expected trmask-{version}-py3-none-manylinux_2_<N>_<arch>.whl")
    tag = match.group(1)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"trmask-{version}.dist-info"
        wheel_file = archive.read(f"{info}/WHEEL").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    if "Root-Is-Purelib: false" not in wheel_file or f"Tag: py3-none-{tag}" not in wheel_file:
        fail(f"WHEEL says:\n{wheel_file}")
    if f"\nVersion: {version}\n" not in metadata:
        fail(f"METADATA does not give version {version}")
    if "trmask = trmask.cli:main" not in entry_points:
        fail(f"no `trmask` command in entry_points.txt:\n{entry_points}")
    variants = ["x86-64-v3", "x86-64-v4"] if match.group(2) == "x86_64" else []
    needed = {"trmask/include/trmask.h", "trmask/py.typed", "trmask/__init__.py", "trmask/cli.py",
              f"{info}/licenses/LICENSE"}
    needed |= {f"trmask/_lib/glibc-hwcaps/{v}/libtrmask.so" for v in variants} or {"trmask/_lib/libtrmask.so"}
    if needed - names:
        fail(f"missing from the wheel: {sorted(needed - names)}")
    libraries = sorted(n for n in names if n.endswith(".so"))
    if len(libraries) != max(1, len(variants)):
        fail(f"unexpected libraries in the wheel: {libraries}")
    shown = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True)
    print(shown.stdout.strip())
    agreed = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"', shown.stdout)
    if shown.returncode != 0 or agreed is None or agreed.group(1) != tag:
        fail(f"auditwheel show does not agree with the tag {tag}:\n{shown.stdout}{shown.stderr}")
    print(f"check_wheel: {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB): tag {tag} agreed by auditwheel; "
          f"{len(libraries)} {'libraries' if len(libraries) > 1 else 'library'}, trmask.h, py.typed, the trmask "
          f"command; built on {platform.machine()}")


def same_wheel(wheel: Path, other: Path) -> None:
    if other.name != wheel.name:
        fail(f"{other} is not named like {wheel.name}")
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(other) as b:
        if sorted(a.namelist()) != sorted(b.namelist()):
            fail(f"{other} holds other files: {sorted(set(a.namelist()) ^ set(b.namelist()))}")
        differing = [n for n in a.namelist() if not n.endswith((".so", "RECORD")) and a.read(n) != b.read(n)]
        if differing:
            fail(f"{other} differs from {wheel} in {differing}")
    print(f"check_wheel: {other} has the same name, files and contents (libraries aside) as {wheel}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--same-as"):
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
    if len(sys.argv) == 4:
        main(Path(sys.argv[3]))
        same_wheel(Path(sys.argv[1]), Path(sys.argv[3]))
