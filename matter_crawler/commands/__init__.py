"""Custom scrapy commands of matter-crawler (COMMANDS_MODULE)."""
