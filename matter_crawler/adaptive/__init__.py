"""Adaptive concurrency: how fast each domain can be crawled without hurting it.

One module per part (docs/adaptive.md explains the whole):

- :mod:`.limits`: the bounds (:class:`~.limits.Limits`) and the tuning
  (:class:`~.limits.Tuning`), read from the settings, whose defaults live in
  ``matter_crawler/settings.py`` and the crawl profiles (``matter_crawler/profiles.py``);
- :mod:`.windows`: the latency baseline and the site's background trouble rate;
- :mod:`.states` and :mod:`.law`: the control law, ``DomainController``, free of Scrapy;
- :mod:`.memory`: the memory ceiling;
- :mod:`.extension`: the Scrapy extension ``AdaptiveConcurrency`` that feeds the law
  and puts its decisions on the download slots, and ``adaptive_state()`` for readers
  such as the monitoring.

Nothing is imported here, so the law can be used without loading Scrapy's signals.
"""
