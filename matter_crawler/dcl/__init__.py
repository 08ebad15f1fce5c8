"""The Distributed Compliance Ledger: its records, how they are read and stored, and the
cross-check of the catalogue with them.

- :mod:`.records`: the record kinds, their fields and columns (the one table of them);
- :mod:`.parsing`: pure functions from the REST gateway's JSON answers to records;
- :mod:`.storage`: batch upserts of records with change history (``dcl_changes``);
- :mod:`.crosscheck`: the cross-check's rules, pure, over catalogue and DCL rows.

The spider is :mod:`matter_crawler.spiders.dcl`; the command ``scrapy crosscheck``.
"""
