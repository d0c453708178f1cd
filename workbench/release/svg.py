"""SVG figures: reviewers' browsers render them, so only static drawing elements may pass."""

from __future__ import annotations

import re
from xml.etree.ElementTree import (  # noqa: S405 - serialising a tree we built, not parsing
    register_namespace,
    tostring,
)

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from workbench.errors import WorkbenchUserError

_FORBIDDEN_TAGS = {"script", "foreignobject", "iframe", "object", "embed", "animate", "set",
                   "animatemotion", "animatetransform", "handler", "listener"}


_EXTERNAL_URL = re.compile(r"url\(\s*['\"]?(?!#)", re.IGNORECASE)
SVG_NS = "http://www.w3.org/2000/svg"
register_namespace("", SVG_NS)
register_namespace("xlink", "http://www.w3.org/1999/xlink")


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()


def clean_svg(data: bytes) -> bytes:
    """Refuse scripts, event handlers, embedded documents and links that leave the picture."""
    if len(data) > 10 * 1024 * 1024:
        raise WorkbenchUserError("the SVG figure is larger than 10 MB", reason="release-too-large")
    try:
        root = safe_xml.fromstring(data)
    except (DefusedXmlException, SyntaxError):
        raise WorkbenchUserError("the SVG figure is not well-formed, safe XML") from None
    if _local(root.tag) != "svg":
        raise WorkbenchUserError("the SVG figure's root element is not <svg>")
    for parent in list(root.iter()):  # metadata is text a reviewer never sees: drop it
        for child in list(parent):
            if _local(child.tag) == "metadata":
                parent.remove(child)
    for element in root.iter():
        tag = _local(element.tag)
        if _EXTERNAL_URL.search(element.text or ""):
            raise WorkbenchUserError("the SVG figure loads something from outside itself",
                                     reason="release-unsafe")
        if tag in _FORBIDDEN_TAGS:
            raise WorkbenchUserError(
                f"the SVG figure contains a <{tag}> element: only static drawings can be "
                "released (save the figure with matplotlib's savefig(format='svg'))",
                reason="release-unsafe")
        for attr, value in element.attrib.items():
            name = _local(attr)
            if name.startswith("on"):
                raise WorkbenchUserError(f"the SVG figure has an event handler '{name}'",
                                         reason="release-unsafe")
            if _EXTERNAL_URL.search(value):
                raise WorkbenchUserError("the SVG figure loads something from outside itself",
                                         reason="release-unsafe")
            if name == "href" and not (value.startswith("#") or value.startswith("data:image/png")):
                raise WorkbenchUserError("the SVG figure links outside itself",
                                         reason="release-unsafe")
    return tostring(root)
