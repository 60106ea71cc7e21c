"""The user docs are true: README.md's C snippet compiles as C99 with warnings as errors and runs
against the library; its Swift snippet is the start of examples/swift (which `make test` builds
and runs); and what users read (README, docs, the header, the package's docstrings and output)
cites the project's contract, docs/semantics.md, by sections that exist, never a SPEC they do
not have."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import trmask
from conftest import ROOT

README = (ROOT / "README.md").read_text()
# The library this process loaded (its CPU variant; the installed one under `make test`).
LIBRARY = Path(trmask.get_library())
SWIFT_EXAMPLE = ROOT / "examples" / "swift" / "Sources" / "TRMaskExample" / "main.swift"


def _block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1, f"README.md has {len(blocks)} {language} blocks; expected one"
    return blocks[0]


@pytest.mark.skipif(shutil.which("cc") is None, reason="cc is not installed")
def test_c_snippet_compiles_with_warnings_as_errors_and_runs(tmp_path):
    source = tmp_path / "readme.c"
    source.write_text(_block("c"))
    binary = tmp_path / "readme"
    build = subprocess.run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{trmask.get_include()}",
                            str(source), f"-L{LIBRARY.parent}", "-ltrmask", f"-Wl,-rpath,{LIBRARY.parent}", "-lm",
                            "-o", str(binary)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "keep rows: 1 0"


def test_swift_snippet_is_the_start_of_the_swift_example():
    assert SWIFT_EXAMPLE.read_text().startswith(_block("swift"))


USER_FACING = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "include" / "trmask.h", *sorted((ROOT / "docs").glob("*.md")),
               *sorted((ROOT / "python" / "trmask").rglob("*.py")), *sorted((ROOT / "Sources" / "TRMask").glob("*.swift"))]


def test_user_docs_cite_the_contract_not_spec():
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in USER_FACING
                 for n, line in enumerate(path.read_text().splitlines(), 1) if "SPEC" in line]
    assert not offenders, offenders


def test_every_cited_section_exists():
    text = (ROOT / "docs" / "semantics.md").read_text()
    sections = set(re.findall(r"^#+ §([\d.]+)", text, flags=re.M))
    cited = {(path.name, number) for path in USER_FACING
             for number in re.findall(r"semantics(?:\.md)?\]?(?:\(semantics\.md\))? §([\d.]*\d)", path.read_text())}
    missing = sorted((name, number) for name, number in cited if number not in sections)
    assert cited and not missing, missing
