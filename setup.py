"""Packaging for matter-crawler.

setup.py (not only pyproject.toml) because scrapyd-deploy builds the egg that
scrapyd runs with ``python setup.py bdist_egg`` and finds the project's settings
through the ``scrapy`` entry point below.
"""

from setuptools import find_packages, setup

setup(
    name="matter-crawler",
    version="0.1.0",
    description="Crawler of the CSA Matter certified-products catalogue",
    python_requires=">=3.11",
    packages=find_packages(include=["matter_crawler", "matter_crawler.*"]),
    package_data={
        "matter_crawler": ["**/*.csv", "**/*.html", "**/*.js", "**/*.json", "**/*.css"],
        # the Alembic environment is a directory of scripts, not a package of ours:
        # Alembic runs env.py and the revisions itself, and an egg must carry them
        "matter_crawler.storage": [
            "migrations/*.py",
            "migrations/*.mako",
            "migrations/versions/*.py",
        ],
    },
    include_package_data=True,
    zip_safe=False,
    install_requires=[
        # matter_crawler/core/downloader.py works around scrapy#6982 inside Scrapy's Downloader
        # (private methods): a new minor release is an upgrade to test, not an accident
        "scrapy>=2.19,<2.20",
        "itemadapter>=0.13",
        # the rendering handler subclasses its download handler; 0.0.x releases change it
        "scrapy-playwright>=0.0.48,<0.0.49",
        "SQLAlchemy>=2.1",
        # schema migrations: a database made by an earlier release is upgraded in place
        "alembic>=1.18",
        "prometheus-client>=0.26",
        "twisted>=26.10",
        # .xlsx export with typed cells; writing OOXML by hand is not worth it
        "openpyxl>=3.1",
        # `scrapy record-site` records the real site with betamax over requests
        "requests>=2.32",
        "betamax>=0.9",
        # `scrapy feed` and FEED_ATOM_PATH: Atom 1.0 through a maintained library, not
        # hand-written XML
        "feedgen>=1.0,<2",
    ],
    extras_require={
        "dev": [
            # below 9.2: its structured node ids silently undo pytest-xdist's
            # --dist loadgroup (pytest-xdist#1386), and `make test` relies on the groups
            "pytest>=9,<9.2",
            "pytest-twisted>=1.14",
            # a hung crawl must fail the run, not eat CI's 90 minutes
            "pytest-timeout>=2.3",
            # `make test` runs the suite on parallel workers: a crawl test keeps about
            # one core busy, so on two cores the run takes about half the time
            "pytest-xdist>=3.8",
            "ruff>=0.17",
            "scrapyd>=1.6",
            "scrapyd-client>=2.0",
            # the storage, pipeline and command tests also run on a real PostgreSQL
            "psycopg[binary]>=3.2",
            # the simulated DCL's answers are validated against the contract's schemas
            # (docs/dcl/openapi-excerpt.yml, read with PyYAML)
            "jsonschema>=4.26",
            "PyYAML>=6.0",
            # the feed's tests parse it with a real feed reader's parser
            "feedparser>=6.0",
        ],
        # PostgreSQL as the crawl database: DATABASE_URL=postgresql+psycopg://...
        "postgresql": ["psycopg[binary]>=3.2"],
        "bench": [
            "crawlee[parsel]>=1.11",
            "aiohttp>=3.14",
            "matplotlib>=3.9",
        ],
    },
    entry_points={"scrapy": ["settings = matter_crawler.settings"]},
)
