"""Spiders of the matter-crawler project."""
