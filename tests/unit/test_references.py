"""Every file a document or docstring names is in the repo, so a reader can open it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = ("services", "events", "projections", "tests", "bench", "deploy", "docs", "scripts", ".ci")
# A markdown link's target, or a backticked path that starts at one of our top folders.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
NAMED = re.compile(r"`((?:" + "|".join(map(re.escape, TOP)) + r")/[\w./-]*[\w/])`")
OUTSIDE = re.compile(r"\.\./shared|\bCONTRACT\.md|\bDESIGN\.md|\bSTYLE\.md")


def tracked() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return listed.split()


def test_every_referenced_path_exists() -> None:
    missing = []
    for name in tracked():
        if not name.endswith((".md", ".py", ".toml", ".yaml")):
            continue
        path = REPO / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet in git's index
        text = path.read_text(encoding="utf-8", errors="replace")
        for target in LINK.findall(text) if name.endswith(".md") else ():
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).resolve().exists():
                missing.append(f"{name}: link to {target}")
        for target in NAMED.findall(text):
            if not (REPO / target).exists():
                missing.append(f"{name}: names {target}")
    assert not missing, "\n".join(missing)


def test_no_reference_leaves_the_repo() -> None:
    """Design notes outside the repo (a shared folder beside it) are not there for readers."""
    leaving = [
        name
        for name in tracked()
        if name.endswith((".md", ".py", ".toml"))
        and (REPO / name).is_file()
        and re.search(
            r"\.\./shared|\bCONTRACT\.md|\bDESIGN\.md|\bSTYLE\.md", (REPO / name).read_text()
        )
        and name != "tests/unit/test_references.py"
    ]
    assert not leaving, leaving
