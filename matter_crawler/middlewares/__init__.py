"""Downloader middlewares of matter-crawler."""
