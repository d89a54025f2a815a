"""MkDocs hooks of lucidrl's documentation site (mkdocs.yml: ``hooks``).

* The home page is the repository's README.md (as on the repository's front page), generated as ``index.md``;
  ``docs/README.md``, the guides' own table of contents, becomes ``overview.md``.
* Links that leave ``docs/`` are rewritten, because the site has only what is under ``docs/``: a link to the
  README goes to the home page; a link to any other file of the repository (code, scripts) becomes that file's
  path relative to the repository root, rendered as code (there is no public URL to link to). A link to a
  file that does not exist stays as it is, and the strict build reports it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOME, OVERVIEW = "index.md", "overview.md"
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")  # [text](target#anchor), not images


def on_files(files, config):
    readme = files.get_file_from_path("README.md")
    if readme is not None:  # docs/README.md would be the home page: move it aside for the repository's README
        files.remove(readme)
        files.append(File.generated(config, OVERVIEW, content=readme.content_string))
    files.append(File.generated(config, HOME, content=(ROOT / "README.md").read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    here = ROOT if src == HOME else (DOCS / src).parent  # the home page's links are relative to the repo root

    def rewrite(m: re.Match) -> str:
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ""
        if "://" in target or target.startswith("mailto:"):
            return m.group(0)
        path = (here / target).resolve()
        if not path.exists():
            return m.group(0)  # the strict build names it
        if path == ROOT / "README.md":
            return f"[{text}]({_relative(DOCS / HOME, page)}{anchor})"
        if DOCS in path.parents:
            return f"[{text}]({_relative(path, page)}{anchor})"
        code = path.relative_to(ROOT).as_posix()
        return text if text.strip("`") == code else f"{text} (`{code}`)"

    return _LINK.sub(rewrite, markdown)


def _relative(path: Path, page) -> str:
    """``path`` (under docs/) relative to the directory of ``page``'s source file."""
    target = path.relative_to(DOCS).as_posix()
    src = page.file.src_uri
    if target == "README.md":
        target = OVERVIEW
    depth = src.count("/")
    return "../" * depth + target
