"""The README's and its docs/ pages' commands name entry points, parameters, make targets and files
that exist.

CI runs `make test` (the README's test command) itself; the end-to-end tests run `mlflow run`
on the entry points shown here. This file keeps the text of every shown command true, on the README
and on each page of docs/ it links to.
"""

import re
import shlex

import pytest
import yaml

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PAGES = {path.name: path.read_text() for path in sorted(DOCS.glob("*.md"))}


def bash_lines(text: str) -> list[str]:
    """Command lines of the ```bash blocks, comments dropped."""
    lines, language = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            language = None if language is not None else (line[3:].strip() or "text")
        elif language == "bash" and line.strip() and not line.strip().startswith("#"):
            lines.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return lines


COMMANDS = [line for text in (README, *PAGES.values()) for line in bash_lines(text)]
ENTRY_POINTS = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]


def mlflow_run_commands(commands=COMMANDS):
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[:3] == ["mlflow", "run", "."]:
                yield part.strip(), words


@pytest.mark.parametrize("command,words", list(mlflow_run_commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_mlflow_run_command_names_a_real_entry_point_and_params(command, words):
    entry = words[words.index("-e") + 1] if "-e" in words else "main"
    assert entry in ENTRY_POINTS, command
    declared = ENTRY_POINTS[entry]["parameters"]
    given = [words[i + 1].split("=", 1)[0] for i, w in enumerate(words) if w == "-P"]
    assert set(given) <= set(declared), f"{command}: unknown params {set(given) - set(declared)}"
    assert "--env-manager" in words, f"{command}: say which environment it runs in"


def test_readme_shows_mlflow_run_commands():
    assert len(list(mlflow_run_commands(bash_lines(README)))) >= 5


def test_the_readme_fits_in_250_lines():
    # The user's page: what it is, set-up and test, the workflow, the UI, real data, reruns; operators'
    # and contributors' material goes to docs/.
    assert len(README.splitlines()) <= 250


def test_the_readme_links_every_docs_page_and_each_link_exists():
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", README))
    assert linked == set(PAGES), f"pages not linked: {set(PAGES) - linked}; links to no page: {linked - set(PAGES)}"
    for name, text in PAGES.items():
        for target in re.findall(r"\]\((?!https?:)([^)#]+)(?:#[^)]*)?\)", text):
            assert (DOCS / target).exists(), f"docs/{name} links to {target}, which does not exist"


def test_make_targets_shown_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = {m for m in re.findall(r"^([a-z-]+):", makefile, flags=re.M)}
    shown = {cmd.split()[1] for cmd in COMMANDS if cmd.startswith("make ")}
    shown |= {target for text in (README, *PAGES.values()) for target in re.findall(r"`make ([\w-]+)", text)}
    assert shown and shown <= targets, shown - targets


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in README


def layout_tree() -> str:
    return re.search(r"## What is where\n\n```\n(.*?)```", PAGES["layout.md"], flags=re.S).group(1)


def test_tree_lists_existing_paths():
    for line in layout_tree().splitlines():
        names = re.match(r"\s*((?:[\w./-]+,\s*)*[\w./-]+)", line).group(1).replace(",", " ").split()
        for name in names:
            if line.startswith("  "):  # a file inside the folder above
                assert any((ROOT / folder / name).exists() for folder in ("steps", "madness")), name
            else:
                assert (ROOT / name.rstrip("/")).exists(), name


def test_tree_lists_every_module_of_the_steps_and_the_package():
    listed = set(re.findall(r"[\w]+\.py", layout_tree()))
    modules = {path.name for folder in ("steps", "madness") for path in (ROOT / folder).glob("*.py")}
    assert modules - {"__init__.py"} <= listed, sorted(modules - {"__init__.py"} - listed)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_into_a_docs_page_names_one_of_its_headings():
    links = re.findall(r"\]\(docs/([\w.-]+\.md)#([\w-]+)\)", README)
    assert links
    for page, target in links:
        headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", PAGES[page], re.M)}
        assert target in headings, f"README links docs/{page}#{target}, a heading it does not have"


def test_the_retry_settings_shown_for_mlflow_run_are_the_steps_own():
    from steps._entry import HTTP_DEFAULTS

    (line,) = [c for c in COMMANDS if c.startswith("export MLFLOW_HTTP_REQUEST_")]
    assert dict(word.split("=", 1) for word in line.split()[1:]) == HTTP_DEFAULTS


DEFINED_TESTS = {
    name
    for path in (ROOT / "tests").glob("test_*.py")
    for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M)
}


def test_every_test_the_reliability_page_names_exists():
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", PAGES["reliability.md"]))
    assert len(named) >= 20 and named <= DEFINED_TESTS, sorted(named - DEFINED_TESTS)


def test_every_test_and_test_file_the_tests_list_of_promises_names_exists():
    promises = (ROOT / "tests" / "README.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", promises))
    files = set(re.findall(r"`(test_[a-z0-9_]+\.py)`", promises))
    assert len(named) >= 100 and named <= DEFINED_TESTS, sorted(named - DEFINED_TESTS)
    assert {name for name in files if not (ROOT / "tests" / name).is_file()} == set()
