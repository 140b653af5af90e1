"""The README and the manual: every relative link resolves, anchors included, and the pages link both ways."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page):
    """GitHub's heading anchors of a Markdown page (outside code blocks)."""
    found, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def relative_links(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, broken


def test_readme_stays_a_front_door():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    first_screen = "\n".join(readme.splitlines()[:60])
    for heading in ("## Install", "## Quick start", "## Getting the data"):
        assert heading in first_screen, heading
    assert "## Tests" in readme


def test_manual_pages_link_both_ways():
    index = REPO / "docs" / "index.md"
    listed = {(index.parent / target).resolve() for target in relative_links(index)}
    for page in sorted((REPO / "docs").glob("*.md")):
        if page == index or page.name == "explanation_quality.md":  # a generated table, linked from explanations
            continue
        assert page.resolve() in listed, f"{page.name} is not in docs/index.md"
        back = {(page.parent / target.partition("#")[0]).resolve() for target in relative_links(page)}
        assert index.resolve() in back, f"{page.name} does not link back to the index"


def test_the_help_names_only_files_that_exist_and_every_option_is_documented():
    """Every sample or architecture file a command's --help names exists, and every option is in the manual's command pages."""
    from click.testing import CliRunner

    from fruitkeras.cli import main

    manual = "".join((REPO / "docs" / page).read_text(encoding="utf-8") for page in ("commands.md", "data.md"))
    runner = CliRunner()
    commands = [(name,) for name in main.commands if name != "data"] + [("data", name) for name in main.commands["data"].commands]
    for command in commands:
        text = runner.invoke(main, [*command, "--help"], terminal_width=200).output
        for path in re.findall(r"\b((?:samples|architectures)/[\w./-]*\w)", text):
            assert (REPO / path).exists(), f"fruitkeras {' '.join(command)} --help names {path}, which does not exist"
        for option in re.findall(r"^\s+(--[\w-]+)", text, flags=re.M):
            if option != "--help":
                assert option in manual, f"fruitkeras {' '.join(command)} {option} is in neither docs/commands.md nor docs/data.md"
