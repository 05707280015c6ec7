"""Great Expectations Data Docs that work offline, where auditors read them.

GX 1.x's page templates load jQuery, Bootstrap, bootstrap-table and Font Awesome from CDNs and the GX logo
from S3.  Offline, the index's validation list (drawn by bootstrap-table) stays empty and validation pages
show no status (Font Awesome icons).  After every Data Docs build the site is rewritten here: the assets the
pages need are copied beside them from ``data_docs_static/`` (each library with its licence file), every
CDN reference points at that copy by relative path, and every other remote URL (charts, date pickers,
GX's logo, links to GX's website) is removed, so a page never asks the network for anything.

The filter-control extension is left out on purpose: it needs the date-picker plugin, which is not shipped;
without it bootstrap-table draws the same list without per-column filter boxes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

STATIC = Path(__file__).with_name("data_docs_static")
# Where the shipped assets land inside the site (beside GX's own ``static/images`` and ``static/styles``).
VENDOR = Path("static") / "vendor"
# Remote asset -> shipped copy (relative to VENDOR); a remote asset not listed here is dropped.
LOCAL_COPIES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
}
REMOTE = r"https?://[^\"'\s>]+"
_SCRIPT = re.compile(rf"<script\b[^>]*\bsrc=\"({REMOTE})\"[^>]*>\s*</script>", re.IGNORECASE)
_LINK = re.compile(rf"<link\b[^>]*\bhref=\"({REMOTE})\"[^>]*>", re.IGNORECASE)
_IMG = re.compile(rf"<img\b[^>]*\bsrc=\"{REMOTE}\"[^>]*>", re.IGNORECASE)
_ANCHOR_HREF = re.compile(rf"(<a\b[^>]*?)\s+href=\"{REMOTE}\"", re.IGNORECASE)
# A CSS background from the network (the dark-mode logo): dropped, the <img> logo stays.
_CSS_URL = re.compile(rf"url\(['\"]?{REMOTE}['\"]?\)", re.IGNORECASE)
# The filter boxes' reset button: without the filter-control extension there is nothing to clear.
_CLEAR_FILTERS = re.compile(r"<button\b[^>]*clearTableFilters[^>]*>[^<]*</button>", re.IGNORECASE)
# Subresource integrity and CORS mode make Chromium refuse a script loaded from a file:// page.
_SRI = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"", re.IGNORECASE)
# The GX logo's <img> is the only image GX takes from the network; the site ships the same picture.
LOGO = Path("static") / "images" / "logo-long.png"


def _relative(page: Path, site: Path, target: Path) -> str:
    """``target`` (relative to the site root) as seen from ``page``, for an href that works from a copied site."""
    depth = len(page.relative_to(site).parts) - 1
    return "/".join([".."] * depth + list(target.parts))


def offline_html(html: str, page: Path, site: Path) -> str:
    """One page with every remote URL replaced by its shipped copy or removed."""

    def asset(match: re.Match[str]) -> str:
        local = LOCAL_COPIES.get(match.group(1))
        if local is None:
            return ""
        return _SRI.sub("", match.group(0).replace(match.group(1), _relative(page, site, VENDOR / local)))

    html = _SCRIPT.sub(asset, html)
    html = _LINK.sub(asset, html)
    html = _IMG.sub(f'<img src="{_relative(page, site, LOGO)}" alt="Great Expectations" style="height: 50px">', html)
    html = _CSS_URL.sub("none", html)
    html = _CLEAR_FILTERS.sub("", html)
    return _ANCHOR_HREF.sub(r"\1", html)


def make_offline(site: Path) -> None:
    """Copy the shipped assets into ``site`` and rewrite each of its pages (idempotent: a rewritten page has
    no remote URL left, so a second pass changes nothing)."""
    shutil.copytree(STATIC, site / VENDOR, dirs_exist_ok=True)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        rewritten = offline_html(html, page, site)
        if rewritten != html:
            page.write_text(rewritten, encoding="utf-8")
