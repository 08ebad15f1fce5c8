"""The crawl's replacements of Scrapy's core parts, as ``scrapy.core`` names them.

- :mod:`.downloader`: a Downloader whose per-domain concurrency holds (scrapy#6982)
  under a politeness ceiling; the one place that touches Scrapy's private methods.
- :mod:`.scheduler`: a Scheduler that holds retries until their not-before time.
- :mod:`.session`: the crawl's run id, component state and counters kept in JOBDIR.
- :mod:`.liveness`: whether the process behind a lock or a JOBDIR marker still runs.
"""
