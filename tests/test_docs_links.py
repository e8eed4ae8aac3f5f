"""Every relative link and `#anchor` in README.md and docs/**/*.md resolves: the file exists, and the anchor is a
heading of it under GitHub's rules (lowercase, punctuation dropped, spaces to '-', '-1', '-2' for repeats)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading's text: markup and punctuation dropped (letters, digits, '_', '-' and
    spaces kept), lowercase, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines outside fenced code blocks, with their line numbers."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def broken_links(root: Path = ROOT) -> list[str]:
    """'file:line: target (why)' for each relative link of README.md and docs/**/*.md that does not resolve."""
    broken = []
    for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        for number, line in prose_lines(path):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(root)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{where} (no heading with this anchor)")
    return broken


def test_github_anchor_follows_githubs_rules():
    assert github_anchor("Four tasks at UPO's defaults: T 0.5") == "four-tasks-at-upos-defaults-t-05"
    assert github_anchor("Use it from the command line: `upo train`") == "use-it-from-the-command-line-upo-train"
    assert github_anchor("Task 1 over three seeds, at the defaults") == "task-1-over-three-seeds-at-the-defaults"


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "RESULTS.md").write_text("# Results\n## The demo\n## The demo\n")
    (tmp_path / "docs" / "results" / "old.md").write_text(
        "[ok](../RESULTS.md#the-demo-1) [gone](../RESULTS.md#the-demo-2) [here](#no-such) [file](none.md)\n"
        "```\n[in code](none.md)\n```\n")
    (tmp_path / "README.md").write_text("[ok](docs/RESULTS.md#results) [web](https://example.org/x.md#y)\n")
    assert broken_links(tmp_path) == [
        "docs/results/old.md:1: ../RESULTS.md#the-demo-2 (no heading with this anchor)",
        "docs/results/old.md:1: #no-such (no heading with this anchor)",
        "docs/results/old.md:1: none.md (no such file)",
    ]


def test_every_relative_link_in_the_docs_resolves():
    assert broken_links() == []


if __name__ == "__main__":  # python tests/test_docs_links.py prints the broken links, one a line
    print("\n".join(broken_links()))
