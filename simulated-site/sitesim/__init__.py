"""A simulated csa-iot.org catalogue: the site every test, demo and benchmark crawls.

Start it with ``python -m sitesim --port 8800 --products 6000 --seed 1``
or, from tests and benchmarks, with :class:`sitesim.process.SimulatedSite`.

It shares no code with the crawler on purpose: it imports nothing from
``matter_crawler`` outside this package, and the crawler never imports it, so a
bug in one cannot be mirrored in the other and go unnoticed. Importing this
package stays cheap (no Twisted) so the launcher can be used from any process.
"""
