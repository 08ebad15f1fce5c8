"""The ``SwitchedOffComponents`` add-on: stock components switched off are not loaded.

Scrapy imports every component of ``EXTENSIONS_BASE`` and
``DOWNLOADER_MIDDLEWARES_BASE`` and asks it to build itself; one whose switch is off
raises ``NotConfigured`` and is dropped, but its module has been imported by then.
For the components below that import costs more than the component ever would: the
remote-control extension imports aiohttp (about 8 MiB and 0.1 s of CPU at every
start), the cookies middleware tldextract. This add-on deletes each of them from
Scrapy's base table (``BaseSettings.delete`` at add-on priority; naming it ``None``
in ``EXTENSIONS`` would still import it, as Scrapy loads the keys it is given) when
its switch is off, so the crawl is the same and starts cheaper. A switch turned on
(``-s REMOTE_CONTROL_ENABLED=True``) leaves the component where it was, and a
component named in ``EXTENSIONS`` or ``DOWNLOADER_MIDDLEWARES`` by the project or
``-s`` is loaded as Scrapy loads it: either way Scrapy's own behaviour. Not a way to
turn anything off: that stays the switch's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

#: (switch, base component setting, component): Scrapy 2.19's components that raise
#: NotConfigured when their switch is off.
SWITCHED: tuple[tuple[str, str, str], ...] = (
    ("REMOTE_CONTROL_ENABLED", "EXTENSIONS_BASE", "scrapy.extensions.remote_control.RemoteControl"),
    ("TELNETCONSOLE_ENABLED", "EXTENSIONS_BASE", "scrapy.extensions.telnet.TelnetConsole"),
    ("MEMDEBUG_ENABLED", "EXTENSIONS_BASE", "scrapy.extensions.memdebug.MemoryDebugger"),
    ("AUTOTHROTTLE_ENABLED", "EXTENSIONS_BASE", "scrapy.extensions.throttle.AutoThrottle"),
    (
        "COOKIES_ENABLED",
        "DOWNLOADER_MIDDLEWARES_BASE",
        "scrapy.downloadermiddlewares.cookies.CookiesMiddleware",
    ),
    (
        "HTTPCACHE_ENABLED",
        "DOWNLOADER_MIDDLEWARES_BASE",
        "scrapy.downloadermiddlewares.httpcache.HttpCacheMiddleware",
    ),
)


class SwitchedOffComponents:
    """Scrapy add-on: leave out the stock components whose switch is off (module docstring)."""

    def update_settings(self, settings: BaseSettings) -> None:
        for switch, base_setting, path in SWITCHED:
            if not settings.getbool(switch):
                settings[base_setting].delete(path, "addon")
