"""matter-crawler: a Scrapy project that crawls the CSA Matter certified-products catalogue.

The simulated site that tests, the demo and the benchmarks crawl is a separate
distribution beside it (``simulated-site/``, package ``sitesim``): it shares no
code with the crawler and is not part of the scrapyd egg.
"""

__version__ = "0.1.0"
