"""Scrapy extensions of matter-crawler."""
