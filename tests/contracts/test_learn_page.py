"""docs/learn.md, the way in: every link it gives leads to a file and a heading that exist."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", path.read_text(), re.M)}


def test_slug_matches_githubs_rule():
    assert slug("2.1 ε-greedy behaviour (E1)") == "21-ε-greedy-behaviour-e1"
    assert slug("3. Pseudocode of `DQN.learn`") == "3-pseudocode-of-dqnlearn"
    assert (
        slug("2.3 The local models, the Fisher matrix and the natural gradient (E4–E7)")
        == "23-the-local-models-the-fisher-matrix-and-the-natural-gradient-e4e7"
    )


def test_every_link_of_the_learn_page_resolves():
    page = DOCS / "learn.md"
    links = re.findall(r"\]\(([^)]+)\)", page.read_text())
    assert len(links) > 40  # the reading path and the question table were read
    for link in links:
        if link.startswith("http"):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve()
        assert path.exists(), f"learn.md links to a missing file: {link}"
        if anchor:
            assert anchor in anchors(path), f"learn.md links to a missing heading: {link}"
