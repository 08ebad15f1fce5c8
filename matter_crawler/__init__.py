"""matter-crawler: a Scrapy project that crawls the CSA Matter certified-products catalogue.

Kept import-free on purpose: ``python -m matter_crawler.sitesim`` imports this
package and must not pull in the crawler (the simulated site shares no code
with it).
"""

__version__ = "0.1.0"
