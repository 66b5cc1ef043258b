"""README.md and docs/: links that resolve, a contents list, and the facts they share with the
code and scripts (the test command, the fault suite's size, the settings) kept in step."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from celery_dalga.config import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(page: Path) -> str:
    """The page without its code blocks (a `#` there is a comment, not a heading)."""
    return FENCE.sub("", page.read_text())


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces
    as hyphens, a repeated one suffixed -1, -2..."""
    seen: dict[str, int] = {}
    for title in re.findall(r"^#+ (.+)$", prose(page), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page))
        if not re.match(r"[a-z]+:", target)  # https:, mailto:
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in relative_links(page):
        name, _, anchor = target.partition("#")
        linked = (page.parent / name).resolve() if name else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert broken == []


def test_readme_has_a_contents_list_linking_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    contents = readme.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = {target.partition("#")[0] for target in LINK.findall(contents)}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= listed


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    commands = {line.split("#")[0].strip() for line in block.splitlines()}
    ci_command = (ROOT / ".ci" / "run").read_text().splitlines()[-1]
    assert ci_command == "make test"
    assert ci_command in commands


NUMBERS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"


def test_fault_suite_size_agrees_in_docs_script_and_tests():
    scenarios = {
        int(number)
        for test_file in (ROOT / "tests" / "faults").glob("test_*.py")
        for number in re.findall(r"^def test_(\d+)_", test_file.read_text(), re.M)
    }
    count = NUMBERS.split()[len(scenarios) - 1]
    assert scenarios == set(range(1, len(scenarios) + 1))
    assert f"all {count} scenarios" in (ROOT / "docs" / "testing.md").read_text()
    assert f"all {count} scenarios" in (ROOT / "scripts" / "faults.sh").read_text()


def test_the_settings_page_documents_every_setting_and_no_other():
    page = (ROOT / "docs" / "settings.md").read_text()
    documented = set()
    for row in re.findall(r"^\| (`DALGA_.+?) \|", page, re.M):
        documented |= {name.lower() for name in re.findall(r"`DALGA_(\w+)`", row)}
    assert documented == {field.name for field in fields(Settings)}
