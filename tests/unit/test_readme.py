"""The README stays a front door: short, and every page it links to exists."""

from __future__ import annotations

import re

from helpers import REPO_ROOT


def test_the_readme_is_a_front_door_of_at_most_220_lines():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220


def test_every_page_the_readme_links_to_exists():
    links = re.findall(r"\]\(([^)#]+)\)", (REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert links and all((REPO_ROOT / link).exists() for link in links), links
