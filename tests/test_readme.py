"""The README is a short front door whose commands work: every module, path, config, link and
anchor it (or a document in docs/) names exists, and the commands it shows run."""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from algorithms.offline.config import ALGORITHMS, PogoConfig, load_algorithm, parse_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 200
#: the commands a test runs, as the README and docs write them (quick: help texts and a plan)
QUICK_COMMANDS = (
    "python -m algorithms.offline.results --help",
    "python -m algorithms.datasets.make_dataset --help",
    "python scripts/chain_study.py --dry-run",
    "python -m algorithms.launch --help",
)
#: path prefixes that name files of the repository (not outputs a command writes)
REPO_PATH = re.compile(r"^(scripts|benchmarks|configs|requirements)/[\w./-]+$")
PLACEHOLDER = re.compile(r"[<>{}$*]")
#: how a command line starts: python, pip, a script, an env assignment, or a bare `-m module`
PROGRAM = re.compile(r"^(\w+=\S+ )*(\S*python[\d.]*|\S*pip|scripts/\S+|-m) ")


def code_text(markdown: str) -> str:
    """Fenced blocks, indented blocks and inline code of a markdown text, one chunk per line."""
    chunks, fenced, in_fence = [], [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if in_fence:
                chunks.append("\n".join(fenced))
                fenced = []
            in_fence = not in_fence
        elif in_fence:
            fenced.append(line)
        elif line.startswith("    "):
            chunks.append(line)
        else:
            chunks.extend(re.findall(r"`([^`]+)`", line))
    return "\n".join(chunks)


def commands(markdown: str) -> list[list[str]]:
    """Each command line in the code of a markdown text, continuation lines joined, comments cut."""
    text = code_text(markdown).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if PROGRAM.match(line):
            try:
                found.append(shlex.split(line))
            except ValueError:  # a prose fragment with an odd quote, not a command
                continue
    return found


def modules(words: list[str]) -> list[str]:
    """The modules a command runs with `python -m` (or a bare `-m`, as a script prints them)."""
    return [
        words[i + 1]
        for i, w in enumerate(words[:-1])
        if w == "-m" and (i == 0 or "python" in words[i - 1])
    ]


def named_paths(words: list[str]) -> list[str]:
    """The repository files a command names: its --config_path, -r files, scripts/..., ..."""
    paths = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--config_path", "-r")]
    paths += [w for w in words if REPO_PATH.match(w)]
    return sorted({p for p in paths if not PLACEHOLDER.search(p)})


def module_file(name: str) -> Path:
    """The file `python -m name` runs: name.py, or a package's __main__.py."""
    package = ROOT / name.replace(".", "/") / "__main__.py"
    return package if package.is_file() else ROOT / (name.replace(".", "/") + ".py")


def markdown_files() -> list[Path]:
    return [README, *DOCS]


def test_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_every_python_module_in_the_code_exists(path):
    for words in commands(path.read_text()):
        for name in modules(words):
            if name.split(".")[0] == "algorithms":
                assert module_file(name).is_file(), f"{path.name}: no module {name}: {words}"
            else:  # venv, pip, pytest: installed, importable
                code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
                assert subprocess.run([sys.executable, "-c", code]).returncode == 0, name


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_every_path_a_command_names_exists(path):
    for words in commands(path.read_text()):
        for named in named_paths(words):
            assert (ROOT / named).exists(), f"{path.name}: {named} does not exist: {words}"


def test_the_readme_names_its_commands_modules_and_paths():
    """The scan above finds what the README shows, so an empty scan cannot pass silently."""
    found = commands(README.read_text())
    names = {name for words in found for name in modules(words)}
    assert {"algorithms.offline.pogo_multi_main", "algorithms.offline.results"} <= names
    paths = {p for words in found for p in named_paths(words)}
    assert "configs/quickstart/hopper_medium_v2_iql.yaml" in paths
    assert "scripts/chain_study.py" in paths and "scripts/sweep_hopper.sh" in paths


def training_runs(paths: list[Path]) -> list[list[str]]:
    """The training commands shown: `<module>` and everything after it, with a --config_path."""
    runs = []
    for words in [words for path in paths for words in commands(path.read_text())]:
        for name in modules(words):
            argv = words[words.index(name) + 1 :]
            if "--config_path" in argv and [name, *argv] not in runs:
                runs.append([name, *argv])
    return runs


def test_the_readme_shows_a_quickstart_and_a_full_length_run():
    paths = [argv[argv.index("--config_path") + 1] for argv in training_runs([README])]
    assert any(p.startswith("configs/quickstart/") for p in paths), paths
    assert any(p.startswith("configs/offline/pogo_multi/") for p in paths), paths


@pytest.mark.parametrize(
    "run", training_runs(markdown_files()), ids=lambda run: run[run.index("--config_path") + 1]
)
def test_every_config_shown_parses_and_suits_its_main(run, monkeypatch):
    """The README's and docs' training commands parse as written (JAX configs too), and each
    algorithm runs with its own main."""
    monkeypatch.chdir(ROOT)  # the commands' paths are relative to the repository
    main, argv = run[0], run[1:]
    config = parse_config(argv)
    backend = getattr(load_algorithm(config.algorithm), "BACKEND", "torch")
    expected = (
        "algorithms.offline.pogo_multi_jax"
        if backend == "jax"
        else "algorithms.offline.pogo_multi_main"
    )
    assert main == expected, f"{config.algorithm} ({backend}) runs with {expected}, not {main}"


@pytest.mark.parametrize("command", QUICK_COMMANDS)
def test_quick_commands_run(command):
    shown = "\n".join(
        " ".join(words) for path in markdown_files() for words in commands(path.read_text())
    )
    program = command.split(" --")[0]
    assert program in shown, f"{program} is not shown in the README or docs"
    argv = [sys.executable, *shlex.split(command)[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-2000:]}"
    assert result.stdout.strip(), f"{command} printed nothing"


def test_chain_study_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    argv = [sys.executable, "scripts/chain_study.py", "--dry-run"]
    argv += ["--out", str(tmp_path / "out"), "--data_dir", str(tmp_path / "data")]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("# ")
    assert "-m algorithms.offline.pogo_multi_main --config_path configs/" in result.stdout
    assert list(tmp_path.iterdir()) == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def links(path: Path) -> list[tuple[str, str]]:
    """Relative links of a markdown file: (target, anchor), outside code."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    found = re.findall(r"\]\(([^)\s]+)\)", text)
    return [tuple((t.split("#", 1) + [""])[:2]) for t in found if "://" not in t]


def test_the_readme_links_to_every_document():
    targets = {target for target, _ in links(README)}
    for doc in DOCS:
        assert f"docs/{doc.name}" in targets, f"README.md does not link {doc.name}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_and_anchor_exists(path):
    for target, anchor in links(path):
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: link to {target} which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{path.name}: {target}#{anchor}: no such heading"


def test_every_config_key_is_documented():
    text = (ROOT / "docs/configuration.md").read_text()
    for field in dataclasses.fields(PogoConfig):
        assert f"`{field.name}`" in text, f"docs/configuration.md does not document {field.name}"


def test_the_readme_table_lists_every_algorithm_with_its_file_and_framework():
    rows = [line.split("|")[1:-1] for line in README.read_text().splitlines() if ".py` |" in line]
    files = {}
    for cells in rows:
        file = re.search(r"`(\w+)\.py`", cells[1]).group(1)
        files[file] = cells[-1].strip()
    assert sorted(files) == sorted(ALGORITHMS)
    for name, framework in files.items():
        backend = getattr(load_algorithm(name), "BACKEND", "torch")
        assert framework == ("JAX" if backend == "jax" else "PyTorch"), (name, framework)


def test_ci_runs_the_readme_test_command():
    command = "OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests"
    assert command in README.read_text()
    assert command in (ROOT / ".ci/run").read_text()
