"""What the database means: the Atom feed of recent changes and the HTML report.

Pure functions over the database (SQLAlchemy Core reads) and plain values; the
commands (``scrapy feed``, ``scrapy report``) and the feed extension are thin
adapters that open the database and write the file.
"""
