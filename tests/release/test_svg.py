"""Released SVG figures (security boundary: workbench/release/svg.py): every hostile SVG is refused
or comes out without its hostile part; matplotlib's figures pass and still draw."""

from __future__ import annotations

import base64
import io

import matplotlib
import pytest

from workbench.errors import WorkbenchUserError
from workbench.release.serialize import from_payload, to_payload
from workbench.release.svg import clean_svg

matplotlib.use("Agg")

HEAD = b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'


def _svg(body: bytes) -> bytes:
    return HEAD + body + b"</svg>"


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(buf, format="PNG")
    return buf.getvalue()


REFUSED = {
    "script": _svg(b"<script>alert(1)</script>"),
    "script in another namespace": _svg(
        b'<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>'),
    "onload": _svg(b'<rect width="1" height="1" onload="alert(1)"/>'),
    "onload on the root": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    "upper-case event": _svg(b'<g ONCLICK="alert(1)"/>'),
    "foreignObject": _svg(b"<foreignObject><div>x</div></foreignObject>"),
    "iframe": _svg(b'<iframe src="http://e.invalid/"/>'),
    "link": _svg(b'<a xlink:href="http://e.invalid/"><rect width="9" height="9"/></a>'),
    "animation that rewrites href": _svg(
        b'<set attributeName="href" to="javascript:alert(1)"/>'),
    "filter with feImage": _svg(b'<filter><feImage xlink:href="http://e.invalid/x"/></filter>'),
    "xlink:href to http": _svg(b'<image xlink:href="http://e.invalid/beacon.png"/>'),
    "plain href to http": _svg(b'<image href="http://e.invalid/beacon.png"/>'),
    "protocol-relative href": _svg(b'<image href="//e.invalid/beacon.png"/>'),
    "use of an external document": _svg(b'<use xlink:href="http://e.invalid/s.svg#x"/>'),
    "use of a local file": _svg(b'<use href="file:///etc/passwd#x"/>'),
    "javascript: href": _svg(b'<use xlink:href="javascript:alert(1)"/>'),
    "svg inside a data: URI": _svg(
        b'<image href="data:image/svg+xml;base64,PHN2Zy8+"/>'),
    "data: URI that is not a PNG": _svg(
        b'<image href="data:image/png;base64,' + base64.b64encode(b"GIF89a") + b'"/>'),
    "url() in an attribute": _svg(b'<rect fill="url(http://e.invalid/p)"/>'),
    "url() in a style attribute": _svg(
        b'<rect style="fill: url(http://e.invalid/p)"/>'),
    "url() hidden by a CSS escape": _svg(b'<rect style="fill: u\\72l(http://e.invalid/)"/>'),
    "@import in a style attribute": _svg(b'<rect style="@import \'http://e.invalid/\'"/>'),
    "CSS comment": _svg(b'<rect style="fill: red /* x */"/>'),
    "javascript: in a style value": _svg(b'<rect style="fill: javascript:alert(1)"/>'),
    "expression() in CSS": _svg(b'<rect style="fill: expression(alert(1))"/>'),
    "image-set in CSS": _svg(b'<rect style="fill: image-set(\'http://e.invalid/\' 1x)"/>'),
    "entity expansion": b'<!DOCTYPE svg [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>',
    "XXE": b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>',
    "external DTD entity": b'<!DOCTYPE svg [<!ENTITY % p SYSTEM "http://e.invalid/x.dtd">%p;]>'
                           b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    "not SVG at the root": b'<html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>',
    "SVG without its namespace": b"<svg><rect/></svg>",
    "transform with a foreign function": _svg(b'<g transform="url(http://e.invalid/)"/>'),
    "path data with a scheme": _svg(b'<path d="javascript:alert(1)"/>'),
    "nesting as a denial of service": _svg(b"<g>" * 200 + b"</g>" * 200),
    "not well-formed": b"<svg",
}


@pytest.mark.parametrize("svg", REFUSED.values(), ids=REFUSED.keys())
def test_hostile_svg_is_refused(svg):
    with pytest.raises(WorkbenchUserError) as refused:
        clean_svg(svg)
    # (an embedded image that is not a PNG is refused by the PNG check: release-unsupported)
    assert refused.value.reason in ("release-unsafe", "release-unsupported")


# Neutralised: what comes out has no trace of the hostile part (the rest of the figure stays).
NEUTRALISED = {
    "style element with @import": (_svg(b'<style>@import "http://e.invalid/x.css";</style>'
                                        b'<rect width="1" height="1"/>'), b"e.invalid"),
    "style element with url()": (_svg(b"<style>rect{fill:url(http://e.invalid/)}</style>"),
                                 b"e.invalid"),
    "stylesheet processing instruction": (
        b'<?xml-stylesheet href="http://e.invalid/x.css"?>' + _svg(b"<rect/>"), b"e.invalid"),
    "unknown CSS property": (_svg(b'<rect style="behavior: x; fill: red"/>'), b"behavior"),
    "expression() in an unknown CSS property": (
        _svg(b'<rect style="width: expression(alert(1))"/>'), b"expression"),
    "unknown attribute": (_svg(b'<rect formaction="x" fill="red"/>'), b"formaction"),
    "metadata carrying text": (_svg(b"<metadata>SECRET-ROW 1234</metadata><rect/>"),
                               b"SECRET-ROW"),
    "title and desc": (_svg(b"<title>SECRET-ROW</title><desc>SECRET-ROW</desc>"), b"SECRET-ROW"),
    "comment": (_svg(b"<!-- SECRET-ROW --><rect/>"), b"SECRET-ROW"),
    "text outside a text element": (_svg(b"<g>SECRET-ROW</g>"), b"SECRET-ROW"),
}


@pytest.mark.parametrize("svg, gone", NEUTRALISED.values(), ids=NEUTRALISED.keys())
def test_hostile_parts_are_dropped(svg, gone):
    out = clean_svg(svg)
    assert gone not in out
    assert out.startswith(b"<svg")


def test_local_references_and_embedded_png_are_kept_and_the_png_is_reencoded():
    png = _png() + b"trailing SECRET-ROW"
    svg = _svg(b'<defs><path id="m1" d="M 0 0 L 1 1"/><clipPath id="c1"><rect/></clipPath>'
               b'</defs><use xlink:href="#m1" style="fill: #1f77b4; stroke-width: 0.8"/>'
               b'<g clip-path="url(#c1)"><image width="2" height="2" xlink:href="data:image/png;'
               b'base64,' + base64.b64encode(png) + b'"/></g>')
    out = clean_svg(svg)
    assert b'href="#m1"' in out and b'clip-path="url(#c1)"' in out
    assert b"fill: #1f77b4; stroke-width: 0.8" in out
    embedded = out.split(b"data:image/png;base64,")[1].split(b'"')[0]
    assert b"SECRET-ROW" not in base64.b64decode(embedded)


@pytest.mark.parametrize("fonttype", ["path", "none"])
def test_a_matplotlib_figure_passes_and_keeps_its_drawing(fonttype):
    import matplotlib.pyplot as plt
    import numpy as np

    with matplotlib.rc_context({"svg.fonttype": fonttype}):
        fig, axes = plt.subplots(1, 3)
        axes[0].plot([1, 2, 3], [3, 1, 2], "o--", label="a")
        axes[0].legend()
        axes[0].set_title("patients per arm")
        axes[1].bar(["a", "b"], [3, 4], hatch="//")
        image = axes[2].imshow(np.arange(25).reshape(5, 5))
        fig.colorbar(image, ax=axes[2])
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
    original = buf.getvalue().encode()
    out = from_payload(to_payload(buf.getvalue())).figure
    assert out.startswith(b"<svg") and b"<script" not in out
    for drawn in (b"<path", b"<use", b"<image", b"clipPath", b"<pattern"):
        assert out.count(drawn) == original.count(drawn), drawn
    if fonttype == "none":
        assert b"patients per arm" in out
