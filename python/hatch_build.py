"""hatchling hooks: the version from include/trmask.h, and the shared libraries in the wheel.

The wheel carries the libraries (one per CPU variant on x86-64, in _lib/glibc-hwcaps/<variant>/),
trmask.h (trmask/include) and a platform tag computed from what the libraries need: the highest
glibc symbol version they import gives manylinux_2_<N> (CI checks it with auditwheel). The
libraries come from TRMASK_LIB_DIR when it is set (a folder in the layout `make` writes: CI builds
once), else from the repository's Makefile (`make lib`, the release flags in one place), which
needs Swift >= 6.0 on PATH.

The same file serves the repository (pyproject.toml in python/, the Swift package one folder up)
and an unpacked sdist (everything in one folder).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
_SHT_GNU_VERNEED = 0x6FFFFFFE


def swift_package_root(project_root: str) -> Path:
    """The folder holding Package.swift: the sdist's root, or the repository above python/."""
    here = Path(project_root)
    return here if (here / "Package.swift").is_file() else here.parent


def header_version(project_root: str) -> str:
    header = (swift_package_root(project_root) / "include" / "trmask.h").read_text()
    match = re.search(r'^#define TRM_VERSION_STRING "([^"]+)"', header, flags=re.M)
    if match is None:
        raise RuntimeError("trmask: include/trmask.h has no TRM_VERSION_STRING")
    return match.group(1)


class CustomMetadataHook(MetadataHookInterface):
    def update(self, metadata: dict) -> None:
        metadata["version"] = header_version(self.root)


def elf_needs(path: Path) -> tuple:
    """(machine, {(library, version name)}) of an ELF64 little-endian shared library: its
    architecture and the symbol versions it imports (the .gnu.version_r section)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        raise RuntimeError(f"trmask: {path} is not a 64-bit little-endian ELF file")
    machine = _ELF_MACHINES.get(struct.unpack_from("<H", data, 0x12)[0])
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize) for i in range(shnum)]

    def string(table_offset: int, at: int) -> str:
        return data[table_offset + at:data.index(b"\0", table_offset + at)].decode()

    needs = set()
    for _, kind, _, _, offset, _, link, count in sections:
        if kind != _SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]
        entry = offset
        for _ in range(count):
            _, n_aux, file_name, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(n_aux):
                _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, at)
                needs.add((string(strings, file_name), string(strings, name)))
                at += next_aux
            entry += next_entry
    return machine, needs


def platform_tag(libraries: list) -> str:
    """manylinux_2_<N>_<arch>: N is the highest GLIBC_2.N the libraries import."""
    machines, glibc = set(), [(2, 17)]  # manylinux's oldest glibc
    for library in libraries:
        machine, needs = elf_needs(library)
        machines.add(machine)
        glibc += [tuple(int(part) for part in name[len("GLIBC_"):].split("."))[:2]
                  for _, name in needs if re.fullmatch(r"GLIBC_\d+\.\d+(\.\d+)?", name)]
    if len(machines) != 1 or None in machines:
        raise RuntimeError(f"trmask: the libraries are for machines {machines}; expected one of {set(_ELF_MACHINES.values())}")
    major, minor = max(glibc)
    return f"manylinux_{major}_{minor}_{machines.pop()}"


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        package_root = swift_package_root(self.root)
        library_dir = os.environ.get("TRMASK_LIB_DIR")
        if library_dir:
            library_dir = Path(library_dir).resolve()
        else:
            library_dir = Path(self.root, "trmask", "_lib").resolve()
            build_libraries(package_root, library_dir, self.metadata.version)
        libraries = sorted(library_dir.glob("glibc-hwcaps/*/libtrmask.so")) or sorted(library_dir.glob("libtrmask.so"))
        if not libraries:
            raise RuntimeError(f"trmask: no libtrmask.so in {library_dir} (TRMASK_LIB_DIR or `make lib`)")
        build_data["tag"] = f"py3-none-{platform_tag(libraries)}"
        build_data["pure_python"] = False
        if version == "editable":  # the package runs from python/trmask, where `make lib` put them
            return
        for library in libraries:
            build_data["force_include"][str(library)] = f"trmask/_lib/{library.relative_to(library_dir).as_posix()}"
        build_data["force_include"][str(package_root / "include" / "trmask.h")] = "trmask/include/trmask.h"


def build_libraries(package_root: Path, library_dir: Path, version: str) -> None:
    """`make lib` in the Swift package: the release flags live in its Makefile only."""
    needs = "Building trmask from source needs Swift >= 6.0 (https://www.swift.org/install) and make on PATH"
    instead = ("or install the prebuilt wheel instead, which needs neither: "
               f"trmask-{version}-py3-none-manylinux_2_<N>_x86_64.whl (README.md, Install)")
    for tool in ("swift", "make"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"trmask: `{tool}` is not on PATH. {needs}; {instead}.")
    version = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"Swift version (\d+)\.(\d+)", version)
    if found is None or int(found.group(1)) < 6:
        raise RuntimeError(f"trmask: found {version.strip() or 'an unknown Swift'}. {needs}; {instead}.")
    subprocess.run(["make", "-C", str(package_root), "lib", f"LIB_DIR={library_dir}"], check=True)
