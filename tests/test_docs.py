"""Every documentation reference in the repository resolves inside the repository.

Someone who clones massmaps has only its files: a docstring, comment, test, config or page that sends
the reader to a Markdown file must name one that is in the repository (``docs/physics.md``,
``docs/projection.md``, ``README.md``, relative to the repository root or to the referring file), and a
"section N" of such a file must be one of its numbered headings. Paths into a particular machine's
folders (an absolute path under the work folder, or a sibling ``shared`` folder reached with ``..``) and
the bare name of the reference notes that live outside the repository are flagged too.

Markdown files that the workflow or a tool writes (outputs, not documents) are listed in ``GENERATED``;
paths under ``results/`` and templated paths (``{RESULTS}/...``) are outputs as well.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Text files that can refer to documentation.
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".toml", ".sh"}
NAMES = {"Snakefile", "Makefile"}
#: Folders never scanned when git cannot list the files.
SKIP_DIRS = {".git", ".venv", "results", ".snakemake", "__pycache__", ".pytest_cache", "node_modules"}

#: Markdown outputs, by file name -> a file that writes it (checked to mention the name).
GENERATED = {
    "table1.md": "workflow/rules/evaluate.smk",  # rule table1
    "calibration.md": "workflow/rules/evaluate.smk",  # rule calibration
    "conformal.md": "workflow/rules/evaluate.smk",  # rule conformal
    "table.md": "tests/fault_matrix.py",  # its --out option
    "ablation.md": "workflow/rules/ablation.smk",  # rule observing_ablation
}

# Files that another change is rewriting now, each with the flagged texts it may still hold until that
# change lands. Empty this mapping then: afterwards every file must pass.
PENDING: dict[str, set[str]] = {}

# A Markdown file name or path; not preceded by a character that would make it part of a longer path
# or a templated one ({RESULTS}/metrics/table1.md is skipped whole).
MD_REF = re.compile(r"(?<![\w./{}$-])[\w./-]*\w\.md(?!\w)")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
# "<file>.md section 2", "<file>.md, sections 2-5, 7", "[physics.md](physics.md), sections 6 and 7"
SECTION_REF = re.compile(
    r"(?<![\w./{}$-])([\w./-]*\w\.md)\)?,?\s+sections?\s+((?:\d+(?:\.\d+)?(?:\s*(?:-|,|and)\s*(?=\d))?)+)"
)
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)?)[.\s]", re.MULTILINE)
FORBIDDEN = {
    "/work/": re.compile(r"(?<![\w.~-])/work/"),
    "../shared": re.compile(r"\.\./shared\b"),
    "PHYSICS": re.compile(r"\bPHYSICS\b(?!\.md)"),  # the notes' name without its extension
}
#: This file names what it looks for, so it is not scanned.
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()


def _repository_files() -> list[str]:
    """Paths (relative, POSIX) of the tracked files and the untracked ones git does not ignore."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            files += [Path(dirpath, f).relative_to(ROOT).as_posix() for f in filenames]
    return sorted({f for f in files if (ROOT / f).is_file()})


def _is_text(path: str) -> bool:
    p = Path(path)
    return p.suffix in SUFFIXES or p.name in NAMES


def _resolve(ref: str, referrer: str, known: set[str]) -> str | None:
    """The repository path ``ref`` names, relative to the root or to the referring file, or None."""
    if ref.startswith("/"):
        return None
    for base in (ROOT, (ROOT / referrer).parent):
        target = (base / ref).resolve()
        try:
            rel = target.relative_to(ROOT).as_posix()
        except ValueError:
            continue
        if rel in known:
            return rel
    return None


def _headings(path: str) -> set[str]:
    return set(HEADING.findall((ROOT / path).read_text(encoding="utf-8")))


def _problems(path: str, text: str, known: set[str]) -> list[tuple[int, str, str]]:
    """(line, flagged text, explanation) of every unresolved reference in one file."""
    found = []

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    scrubbed = URL.sub(lambda m: " " * len(m.group()), text)
    for m in MD_REF.finditer(scrubbed):
        ref = m.group()
        name = ref.rsplit("/", 1)[-1]
        if ref.startswith("results/") or name in GENERATED or _resolve(ref, path, known):
            continue
        found.append((line_of(m.start()), ref, "names a Markdown file that is not in the repository"))
    for m in SECTION_REF.finditer(scrubbed):
        target = _resolve(m.group(1), path, known)
        if target is None:
            continue  # already reported above
        missing = [n for n in re.findall(r"\d+(?:\.\d+)?", m.group(2)) if n not in _headings(target)]
        if missing:
            found.append((line_of(m.start()), m.group(1), f"cites section(s) {missing}, not headings of {target}"))
    for what, pattern in FORBIDDEN.items():
        for m in pattern.finditer(scrubbed):
            found.append((line_of(m.start()), what, "points outside the repository"))
    return found


def test_documentation_references_resolve_inside_the_repository():
    files = _repository_files()
    known = set(files)
    for name, writer in GENERATED.items():
        assert name in (ROOT / writer).read_text(encoding="utf-8"), f"GENERATED: {writer} no longer writes {name}"
    report = []
    for path in (f for f in files if _is_text(f) and f != THIS):
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        allowed = PENDING.get(path, set())
        for line, what, why in _problems(path, text, known):
            if what not in allowed:
                report.append(f"{path}:{line}: {what!r} {why}")
    assert not report, "references that do not resolve inside the repository:\n" + "\n".join(report)
