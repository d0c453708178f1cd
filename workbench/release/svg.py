"""SVG figures (a security boundary): reviewers' browsers render them, so only a static drawing
may pass.

The figure is parsed with defusedxml (no entities, no external DTDs) and *rebuilt* from an
allow-list: a fresh document gets only the drawing elements, attributes and CSS properties named
below, each value checked against a small grammar. Whatever is not on the list is either dropped
(harmless but unneeded: metadata, ``<style>``, titles, unknown attributes and CSS properties) or
refused with a reason (anything active or external: scripts, ``foreignObject``, event handlers,
links, ``url()`` or ``href`` that leave the document, CSS escapes, unknown elements). Stylesheets
are dropped rather than parsed because a stylesheet can reach outside (``@import``, ``url()``)
in more ways than an allow-list can keep up with; matplotlib's only one sets line joins. Embedded
bitmaps must be PNG and are re-encoded like released PNGs. Guarded by tests/release/test_svg.py.

Why not PNG only: reviewers zoom into vector figures to read small labels and counts, and a
renderer (cairo) in the airlock would be a larger parser to trust than this rebuild.
"""

from __future__ import annotations

import base64
import re
from xml.etree.ElementTree import (  # noqa: S405 - building and serialising our own tree
    Element,
    register_namespace,
    tostring,
)

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from workbench.errors import WorkbenchUserError

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
register_namespace("", SVG_NS)
register_namespace("xlink", XLINK_NS)
MAX_SVG_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 100

ELEMENTS = {"svg", "g", "defs", "path", "rect", "circle", "ellipse", "line", "polyline",
            "polygon", "text", "tspan", "use", "image", "clipPath", "pattern", "mask", "marker",
            "symbol", "linearGradient", "radialGradient", "stop"}
DROPPED_ELEMENTS = {"metadata", "style", "title", "desc"}
_TEXT_ELEMENTS = {"text", "tspan"}

_NUMBERS = re.compile(r"[\d\s.,eE+-]*")
_PLAIN = re.compile(r"[\w\s#%.,+'\"-]*")  # no ( ) : ; \ / @ < > &: no url(), no scheme, no escape
_LOCAL_URL = re.compile(r"url\(\s*#[\w.:-]{1,200}\s*\)")
_ID = re.compile(r"[\w.:-]{1,200}")
_GRAMMAR = {
    "d": re.compile(r"[MmZzLlHhVvCcSsQqTtAa\d\s.,eE+-]*"),
    "transform": re.compile(
        r"(\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\([\d\s.,eE+-]*\)\s*,?)*\s*"),
    "points": _NUMBERS, "viewBox": _NUMBERS, "id": _ID,
}
for _name in ("gradientTransform", "patternTransform"):
    _GRAMMAR[_name] = _GRAMMAR["transform"]
# Properties that may point at a paint server, clip path, mask or marker inside the document.
_MAY_REFERENCE = {"fill", "stroke", "clip-path", "mask", "marker-start", "marker-mid",
                  "marker-end"}
PROPERTIES = {
    "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity",
    "stroke-dasharray", "stroke-dashoffset", "stroke-linecap", "stroke-linejoin",
    "stroke-miterlimit", "opacity", "clip-path", "clip-rule", "mask", "marker-start",
    "marker-mid", "marker-end", "stop-color", "stop-opacity", "visibility", "display",
    "font", "font-family", "font-size", "font-style", "font-weight", "font-variant",
    "font-stretch", "text-anchor", "dominant-baseline", "letter-spacing", "word-spacing"}
ATTRIBUTES = PROPERTIES | set(_GRAMMAR) | {
    "style", "version", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx",
    "fy", "dx", "dy", "width", "height", "offset", "preserveAspectRatio", "clipPathUnits",
    "patternUnits", "patternContentUnits", "gradientUnits", "spreadMethod", "maskUnits",
    "maskContentUnits", "markerUnits", "markerWidth", "markerHeight", "refX", "refY", "orient"}


def _unsafe(message: str) -> WorkbenchUserError:
    return WorkbenchUserError(
        f"the SVG figure {message}: only static drawings can be released (save the figure with "
        "matplotlib's savefig(format='svg'), or release it as PNG)", reason="release-unsafe")


def _split(name: str) -> tuple[str | None, str]:
    if name.startswith("{"):
        namespace, local = name[1:].split("}", 1)
        return namespace, local
    return None, name


def _checked_value(name: str, value: str) -> str:
    """An attribute's or CSS property's value, if it matches its grammar; else refused."""
    grammar = _GRAMMAR.get(name, _PLAIN)
    if grammar.fullmatch(value):
        return value
    if name in _MAY_REFERENCE and _LOCAL_URL.fullmatch(value.strip()):
        return value
    raise _unsafe(f"has a '{name[:40]}' value that is not a plain drawing value (only numbers, "
                  "names, colours and url(#id) within the figure)")


def _checked_style(style: str) -> str:
    """Inline CSS: known properties with checked values; unknown properties dropped."""
    if "\\" in style or "/*" in style or "@" in style:
        raise _unsafe("has CSS escapes, comments or at-rules in a style attribute")
    kept = []
    for declaration in style.split(";"):
        if not declaration.strip():
            continue
        prop, colon, value = declaration.partition(":")
        prop = prop.strip().lower()
        if not colon or not re.fullmatch(r"-?[a-z][a-z-]{0,40}", prop):
            raise _unsafe("has a style attribute that is not a list of CSS properties")
        if prop in PROPERTIES:
            kept.append(f"{prop}: {_checked_value(prop, value.strip())}")
    return "; ".join(kept)


def _checked_href(tag: str, value: str) -> str:
    value = value.strip()
    if value.startswith("#") and _ID.fullmatch(value[1:]):
        return value
    if tag == "image" and value.startswith("data:image/png;base64,"):
        from workbench.release.serialize import clean_png

        try:
            # matplotlib wraps the base64 text over lines
            png = base64.b64decode("".join(value.split(",", 1)[1].split()), validate=True)
        except ValueError:
            raise _unsafe("embeds an image that is not valid base64") from None
        return "data:image/png;base64," + base64.b64encode(clean_png(png)).decode("ascii")
    raise _unsafe(f"has a <{tag}> that links outside itself (only #id references and embedded "
                  "PNG images are allowed)")


def _rebuild(source, depth: int) -> Element | None:
    namespace, tag = _split(source.tag) if isinstance(source.tag, str) else (None, "")
    if namespace == SVG_NS and tag in DROPPED_ELEMENTS:
        return None
    if namespace != SVG_NS or tag not in ELEMENTS:
        raise _unsafe(f"contains a <{tag[:40] or 'non-element'}> element")
    if depth > MAX_DEPTH:
        raise _unsafe(f"nests elements more than {MAX_DEPTH} deep")
    out = Element(f"{{{SVG_NS}}}{tag}")
    for raw_name, value in source.attrib.items():
        attr_ns, name = _split(raw_name)
        if name.lower().startswith("on"):
            raise _unsafe(f"has an event handler '{name[:40]}'")
        if name == "href" and attr_ns in (None, XLINK_NS):
            out.set(f"{{{XLINK_NS}}}href", _checked_href(tag, value))
        elif attr_ns is None and name == "style":
            if style := _checked_style(value):
                out.set("style", style)
        elif attr_ns is None and name in ATTRIBUTES:
            out.set(name, _checked_value(name, value))
    if tag in _TEXT_ELEMENTS:
        out.text = source.text
    for child in source:
        rebuilt = _rebuild(child, depth + 1)
        if rebuilt is not None:
            rebuilt.tail = child.tail if tag in _TEXT_ELEMENTS else None
            out.append(rebuilt)
    return out


def clean_svg(data: bytes) -> bytes:
    """The figure rebuilt from the allow-list, or WorkbenchUserError(reason="release-unsafe")
    saying what was refused."""
    if len(data) > MAX_SVG_BYTES:
        raise WorkbenchUserError("the SVG figure is larger than 10 MB", reason="release-too-large")
    try:
        root = safe_xml.fromstring(data)
    except (DefusedXmlException, SyntaxError):
        raise WorkbenchUserError("the SVG figure is not well-formed XML without entities",
                                 reason="release-unsafe") from None
    if _split(root.tag) != (SVG_NS, "svg"):
        raise WorkbenchUserError("the SVG figure's root element is not <svg> in the SVG "
                                 "namespace", reason="release-unsafe")
    return tostring(_rebuild(root, 0))
