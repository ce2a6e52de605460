"""The generated parts of the README and docs pages: what they must hold, and rewriting them (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipecast.build.settings import BuildSettings
from pipecast.targets.listing import replace_between, support_matrix
from pipecast.targets.registry import BUILTIN, get_target
from pipecast.targets.settings import settings_table
from pipecast.targets.versions import versions_table

ROOT = Path(__file__).resolve().parents[2]


def expected_readme() -> str:
    """The README with its generated support matrix."""
    return replace_between((ROOT / "README.md").read_text(encoding="utf-8"), "support-matrix", support_matrix())


# Targets documented together: their page is named after the family.
PAGES = {"vm_aws": "skypilot", "vm_gcp": "skypilot", "vm_azure": "skypilot"}


def page_of(target: str) -> Path:
    """A target's docs page."""
    return ROOT / "docs" / "targets" / f"{PAGES.get(target, target)}.md"


def expected_pages() -> dict[Path, str]:
    """Every target page with its generated settings table (targets that have a settings class)."""
    pages: dict[Path, str] = {}
    for name in BUILTIN:
        cls = get_target(name).settings_class
        path = page_of(name)
        if cls is None or not path.exists():
            continue
        text = pages.get(path) or path.read_text(encoding="utf-8")
        pages[path] = replace_between(text, "settings-table", settings_table(cls))
    minimums = ROOT / "docs" / "versions.md"  # the minimum engine versions, from pipecast.targets.versions
    pages[minimums] = replace_between(minimums.read_text(encoding="utf-8"), "versions-table", versions_table())
    shipping = ROOT / "docs" / "shipping.md"  # the build's settings (pipecast build, submit)
    pages[shipping] = replace_between(shipping.read_text(encoding="utf-8"), "settings-table",
                                      settings_table(BuildSettings))
    return pages


def write() -> list[Path]:
    """Rewrite every generated part; return the files that changed."""
    wanted = {ROOT / "README.md": expected_readme(), **expected_pages()}
    changed = []
    for path, text in wanted.items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write():
        print(f"rewrote {path.relative_to(ROOT)}")
    sys.exit(0)
