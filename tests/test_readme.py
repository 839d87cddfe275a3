"""The README is what a new user meets first: it must stay whole, and say only true things
about the code. A scripted edit once replaced it with one section repeated 54,226 times
(97 MB); these checks would have failed on that commit."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Code that reads the environment for Parley: the settings, the apps, the web/worker entry
# points and the deployment files (bench/ and tests/ set variables for the code they start).
CODE_GLOBS = (
    "project/**/*.py",
    "accounts/**/*.py",
    "budgets/**/*.py",
    "jobs/**/*.py",
    "llm/**/*.py",
    "teams/**/*.py",
    "audit/**/*.py",
    "manage.py",
    "docker/*",
    "scripts/*",
    "scripts/lib/*",
)
# ``env.int("NAME", ...)``, ``env("NAME")``, ``os.environ.get("NAME")``, ``os.getenv("NAME")``,
# ``os.environ["NAME"]``.
ENV_READ = re.compile(
    r"""(?:\benv(?:\.\w+)?\(|os\.environ\.get\(|os\.getenv\(|os\.environ\[)\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _code_files() -> list[Path]:
    files: set[Path] = set()
    for pattern in CODE_GLOBS:
        files.update(p for p in ROOT.glob(pattern) if p.is_file() and "migrations" not in p.parts)
    return sorted(files)


def _configuration_table() -> list[str]:
    """The variables named in the first column of the README's configuration table."""
    section = _readme().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        names.extend(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_readme_is_a_document_not_a_runaway_edit():
    assert README.stat().st_size < 200 * 1024, "README.md is over 200 KB: read its diff"
    headings = [line for line in _readme().splitlines() if re.match(r"#{1,6} ", line)]
    repeated = {h for h in headings if headings.count(h) > 1}
    assert not repeated, f"headings that appear more than once: {sorted(repeated)}"
    for section in ("## Two commands", "## Configuration", "## Map of the code"):
        assert section in headings, f"the README lost its {section!r} section"


def test_the_two_commands_are_in_a_code_block():
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", _readme(), flags=re.S)
    commands = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    assert "scripts/run" in commands
    assert "scripts/test" in commands
    for script in ("scripts/run", "scripts/test"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_every_repository_path_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w/.])((?:scripts|bench|docker)/[\w./-]*[\w])", _readme()))
    assert named, "the README names no scripts/, bench/ or docker/ path: the pattern is broken"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_the_configuration_table_and_the_code_name_the_same_variables():
    documented = set(_configuration_table())
    assert len(documented) > 30, "the configuration table was not found or lost its rows"
    sources = {path: path.read_text(encoding="utf-8") for path in _code_files()}

    read_by_code = {name for text in sources.values() for name in ENV_READ.findall(text)}
    undocumented = sorted(read_by_code - documented)
    assert not undocumented, (
        f"read from the environment but not in the README table: {undocumented}"
    )

    all_code = "\n".join(sources.values())
    never_read = sorted(
        name
        for name in documented
        if not re.search(rf"""["'{{$]{name}\b""", all_code)  # "NAME", ${NAME, $NAME, {NAME
    )
    assert not never_read, f"in the README table but read nowhere in the code: {never_read}"


def test_no_tracked_file_is_over_one_megabyte():
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    too_big = [
        (name, size)
        for name in tracked.decode().split("\0")
        if name and (ROOT / name).is_file() and (size := (ROOT / name).stat().st_size) > 1 << 20
    ]
    assert not too_big, f"tracked files over 1 MB: {too_big}"
