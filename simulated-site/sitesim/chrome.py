"""The WordPress page around the content: head assets, header, footer, the page shell.

Built once per base URL (links are absolute) and weighing most of a page's
20-40 KB, like the real theme's chrome (docs/site-markup.md). A JavaScript-only
page keeps the chrome and moves the content into a script that inserts it.
"""

from __future__ import annotations

import json
from html import escape

_MENU = (
    ("About", ("Our Mission", "Leadership", "Board of Directors", "Careers", "Contact Us",
               "Press Releases", "Brand Guidelines", "Policies")),
    ("Members", ("Member Directory", "Become a Member", "Member Benefits", "Member Portal",
                 "Participant Levels", "Adopter Program")),
    ("Certification", ("Certified Products", "Certification Process", "Authorized Test Labs",
                       "Product Security", "Certification Policy", "Certification Fees",
                       "Interoperability Events", "Compliance Documents")),
    ("Standards", ("Matter", "Zigbee", "Aliro", "Smart Home Standard", "Data Privacy",
                   "IoT Device Security Specification", "Specification Downloads")),
    ("Resources", ("Developer Resources", "Webinars", "White Papers", "Case Studies",
                   "Glossary", "FAQ", "Logos & Marks", "Matter Device Library")),
    ("News & Events", ("News", "Blog", "Events", "Member Meetings", "Podcasts",
                       "Newsletter Sign-Up")),
)  # fmt: skip
_FOOTER_COLUMNS = (
    ("Alliance", ("About", "Leadership", "Careers", "Contact", "Press")),
    ("Standards", ("Matter", "Zigbee", "Aliro", "Product Security")),
    ("Members", ("Directory", "Join", "Portal", "Benefits")),
    ("Legal", ("Privacy Policy", "Terms of Use", "Trademark Policy", "Cookie Settings",
               "Antitrust Policy", "Accessibility")),
)  # fmt: skip
_STYLE_BLOCKS = (
    "wp-block-button", "wp-block-columns", "wp-block-column", "wp-block-group",
    "wp-block-image", "wp-block-cover", "wp-block-heading", "wp-block-list",
    "wp-block-navigation", "wp-block-quote", "wp-block-search", "wp-block-separator",
    "wp-block-social-links", "wp-block-spacer", "wp-block-table", "wp-block-crown-blocks",
    "has-text-color", "has-background", "has-link-color", "is-layout-flex",
    "is-layout-flow", "is-layout-constrained", "alignwide", "alignfull",
)  # fmt: skip
_COLORS = ("#0b2240", "#00b2a9", "#e6f4f1", "#f5f7fa", "#ffffff", "#1a1a1a", "#6c757d")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _inline_css() -> str:
    rules = []
    for i, block in enumerate(_STYLE_BLOCKS):
        for j, state in enumerate(("", ":hover", ":focus", " a", " p", " > *")):
            color = _COLORS[(i + j) % len(_COLORS)]
            rules.append(
                f".{block}{state}{{margin:{(i * j) % 24}px 0;padding:{(i + j) % 16}px;"
                f"color:{color};line-height:1.{(i + 3 * j) % 9};gap:var(--wp--style--gap-{j})}}"
            )
    return "\n".join(rules)


#: Where a JavaScript-only page's content appears once its script has run.
JS_ROOT = '<div id="product-root"></div>'


def js_loader(content: str) -> str:
    """The script that puts ``content`` in place of :data:`JS_ROOT` 50 ms after load."""
    markup = json.dumps(content).replace("<", "\\u003c")
    return (
        '<script id="product-root-loader">\n(function () {\n'
        f"  var markup = {markup};\n"
        "  window.setTimeout(function () {\n"
        '    var root = document.getElementById("product-root");\n'
        '    var template = document.createElement("template");\n'
        "    template.innerHTML = markup;\n"
        "    root.replaceWith(template.content);\n"
        "  }, 50);\n})();\n</script>\n"
    )


class Chrome:
    """The page chrome for one base URL (``http://host:port``), and the page shell."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self._head_assets = self._make_head_assets()
        self._header = self._make_header()
        self._footer = self._make_footer()

    def page(
        self,
        *,
        title: str,
        canonical: str | None,
        head_extra: str,
        body_class: str,
        content: str,
        js_only: bool,
    ) -> bytes:
        """A whole HTML page: ``content`` in the chrome (in a script when ``js_only``)."""
        canonical_link = (
            f'<link rel="canonical" href="{escape(canonical)}" />\n' if canonical else ""
        )
        if js_only:
            # The empty shell: the same page, but the content only exists inside a
            # script that inserts exactly this markup where the root div is.
            main, loader = JS_ROOT, js_loader(content)
        else:
            main, loader = content, ""
        return (
            '<!DOCTYPE html>\n<html lang="en-US">\n<head>\n<meta charset="UTF-8" />\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1" />\n'
            f"<title>{title}</title>\n{canonical_link}{head_extra}{self._head_assets}"
            f'</head>\n<body class="{body_class} wp-theme-crown">\n{self._header}'
            f'<main id="main" class="site-main"><div class="container">\n{main}\n</div></main>\n'
            f"{self._footer}{loader}</body>\n</html>\n"
        ).encode()

    # --- chrome (built once per base URL) -----------------------------------

    def _make_head_assets(self) -> str:
        base = self.base
        sheets = "".join(
            f'<link rel="stylesheet" id="{name}-css" href="{base}/wp-content/{path}" '
            'media="all" />\n'
            for name, path in (
                ("wp-block-library", "plugins/gutenberg/build/block-library/style.css?ver=19.2"),
                ("crown-theme", "themes/crown/style.css?ver=2.4.1"),
                ("crown-blocks", "plugins/crown-blocks/build/style-index.css?ver=1.9.0"),
                ("searchwp-forms", "plugins/searchwp/assets/css/frontend/search-forms.css?ver=4.3"),
                ("cookie-law-info", "plugins/cookie-law-info/public/css/cookie-law-info.css"),
            )
        )
        config = json.dumps(
            {
                "ajaxUrl": f"{base}/wp-admin/admin-ajax.php",
                "homeUrl": base,
                "themeUrl": f"{base}/wp-content/themes/crown",
                "nonce": "5f1c0a2b9e",
                "i18n": {k: k.replace("_", " ").title() for k in _I18N_KEYS},
                "breakpoints": {"sm": 576, "md": 768, "lg": 992, "xl": 1200, "xxl": 1400},
            },
            separators=(",", ":"),
        )
        return (
            f'{sheets}<style id="global-styles-inline-css">\n{_CSS}\n</style>\n'
            f'<script id="crown-theme-js-extra">var crownThemeData = {config};</script>\n'
            f'<script src="{base}/wp-includes/js/jquery/jquery.min.js?ver=3.7.1" '
            'id="jquery-core-js"></script>\n'
        )

    def _make_header(self) -> str:
        base = self.base
        menus = []
        for top, children in _MENU:
            links = "".join(
                f'<li class="menu-item menu-item-type-post_type"><a href="{base}/{_slug(top)}/'
                f'{_slug(child)}/">{escape(child)}</a></li>'
                for child in children
            )
            menus.append(
                f'<li class="menu-item menu-item-has-children"><a href="{base}/{_slug(top)}/">'
                f'{escape(top)}</a><ul class="sub-menu">{links}</ul></li>'
            )
        return (
            '<div id="page" class="site"><a class="skip-link screen-reader-text" href="#main">'
            'Skip to content</a>\n<header id="masthead" class="site-header">'
            f'<div class="site-branding"><a href="{base}/" rel="home" class="custom-logo-link">'
            '<span class="site-title">Connectivity Standards Alliance</span></a></div>\n'
            '<nav id="site-navigation" class="main-navigation" aria-label="Primary">'
            '<ul id="primary-menu" class="menu">' + "\n".join(menus) + "</ul></nav>\n"
            f'<div class="header-actions"><a class="button" href="{base}/members/join/">Join</a>'
            f'<a class="button" href="{base}/member-portal/">Member Login</a></div></header>\n'
        )

    def _make_footer(self) -> str:
        base = self.base
        columns = "".join(
            f'<div class="footer-column"><h4>{escape(title)}</h4><ul>'
            + "".join(
                f'<li><a href="{base}/{_slug(title)}/{_slug(link)}/">{escape(link)}</a></li>'
                for link in links
            )
            + "</ul></div>"
            for title, links in _FOOTER_COLUMNS
        )
        scripts = "".join(
            f'<script src="{base}/wp-content/{path}" id="{name}-js"></script>\n'
            for name, path in (
                ("crown-theme", "themes/crown/js/main.min.js?ver=2.4.1"),
                ("crown-blocks", "plugins/crown-blocks/build/frontend.js?ver=1.9.0"),
                ("cookie-law-info", "plugins/cookie-law-info/public/js/cookie-law-info.js"),
            )
        )
        return (
            '<footer id="colophon" class="site-footer">'
            f'<div class="footer-columns">{columns}</div>\n'
            '<div class="site-info"><p>&copy; Connectivity Standards Alliance. All rights '
            "reserved. Matter, Zigbee and the Connectivity Standards Alliance logos are "
            "trademarks of the Connectivity Standards Alliance.</p></div></footer></div>\n"
            f"{scripts}<script>\nwindow.dataLayer = window.dataLayer || [];\n"
            "function gtag(){dataLayer.push(arguments);}\n"
            "gtag('consent', 'default', {'analytics_storage': 'denied'});\n</script>\n"
        )


_CSS = _inline_css()
_I18N_KEYS = (
    "search_products", "no_results", "load_more", "filter_by", "clear_filters",
    "device_type", "specification", "certificate_id", "vendor", "close_menu", "open_menu",
)  # fmt: skip
