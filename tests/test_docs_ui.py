"""The guides name what the user sees: those names are checked against the code that shows them,
so the docs cannot drift from the UI (issue 18 item 7)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "docs" / "tutorial-researcher.md", ROOT / "docs" / "hub.md", ROOT / "README.md"]


def _guides() -> str:
    return "\n".join(path.read_text() for path in GUIDES)


def test_the_heading_the_guides_send_users_to_is_the_home_pages():
    from workbench.hub import home

    headings = set(re.findall(r"<h1>([^<]+)</h1>", Path(home.__file__).read_text()))
    named = re.findall(r"Under \*\*([^*]+)\*\* start", _guides())
    assert named, "the tutorial no longer says where to start a study's server"
    assert set(named) <= headings, (named, headings)
    demo = (ROOT / "workbench" / "hub" / "demo.py").read_text()
    for label in re.findall(r"her studies are under '([^']+)'", demo):
        assert label in headings


def test_the_kernel_the_guides_name_is_the_only_kernelspec():
    from workbench.sandbox import kernelspec

    source = Path(kernelspec.__file__).read_text()
    (display,) = re.findall(r'"display_name": "([^"]+)"', source)
    named = set(re.findall(r"\*\*(Python 3 \([^)]*\))\*\*", _guides()))
    assert named and named == {display}, (named, display)


def test_the_tutorials_study_and_user_are_the_demo_policys():
    from workbench.policy.loader import load_policy
    from workbench.resources import DEMO_POLICY

    policy = load_policy(DEMO_POLICY)
    text = (ROOT / "docs" / "tutorial-researcher.md").read_text()
    user, study = re.search(r"You are \*\*(\w+)\*\*, a researcher in the study `([\w-]+)`",
                            text).groups()
    assert user in policy.studies[study].members
