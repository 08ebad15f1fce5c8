"""Scrapy settings of the matter-crawler project.

Every setting of our own is documented in the README's settings table. Values
a crawl profile controls (concurrency, delay, adaptive bounds, memory limit) are
set by :mod:`matter_crawler.profiles`, not here, so that ``CRAWL_PROFILE``
works and ``-s`` still overrides any of them.
"""

# Scrapy's TLS modules build deprecated aliases with inspect.stack() when first
# imported; each frame of the stack then costs a walk of sys.modules. Imported here,
# the first of the project's modules Scrapy loads, the stack is short and sys.modules
# small: about 0.2 s of CPU less at every start than from deep in a component's imports.
import scrapy.core.downloader.contextfactory  # noqa: F401

from matter_crawler import __version__

BOT_NAME = "matter_crawler"
SPIDER_MODULES = ["matter_crawler.spiders"]
NEWSPIDER_MODULE = "matter_crawler.spiders"
COMMANDS_MODULE = "matter_crawler.commands"

# -- what to crawl and where to store it ---------------------------------------
CSA_BASE_URL = "https://csa-iot.org"
CSA_LISTING_QUERY = (
    "p_keywords=&p_type%5B0%5D=14&p_program_type%5B0%5D=1049"
    "&p_certificate=&p_family=&p_firmware_ver="
)
# the Distributed Compliance Ledger's REST observer node (the dcl spider); the simulated
# site serves one under /dcl/ with --dcl (http://127.0.0.1:8800)
DCL_BASE_URL = "https://on.dcl.csa-iot.org"
# records per page of the ledger's lists (pagination.limit): the gateway sets no maximum,
# so large pages keep a full walk to few requests; its default (100) would take 10x more
DCL_PAGE_LIMIT = 1000
# empty: $MATTER_DATABASE_URL (the place for a URL with a password), else the SQLite file
# sqlite:///data/matter.sqlite3 (matter_crawler.storage.resolve_database_url)
DATABASE_URL = ""
CRAWL_PROFILE = "polite"
ADDONS = {
    # credentials masked in every log line, first of all (matter_crawler.redaction)
    "matter_crawler.redaction.CredentialMasking": -10,
    "matter_crawler.profiles.CrawlProfile": 0,
    # installs scrapy-playwright when a browser is found (see matter_crawler.rendering)
    "matter_crawler.rendering.addon.Rendering": 10,
    # stock components switched off by their own setting are not even imported
    "matter_crawler.switched_off.SwitchedOffComponents": 20,
}

# -- politeness toward the real site -----------------------------------------------
ROBOTSTXT_OBEY = True
USER_AGENT = (
    f"matter-crawler/{__version__} "
    "(+https://github.com/matter-crawler/matter-crawler; Matter certified-products catalogue)"
)
DOWNLOAD_TIMEOUT = 30
# a product page is ~30 KB: anything near these sizes is not a catalogue page
DOWNLOAD_MAXSIZE = 10 * 1024 * 1024
DOWNLOAD_WARNSIZE = 2 * 1024 * 1024
COOKIES_ENABLED = False  # the catalogue needs no session

# -- engine --------------------------------------------------------------------------
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
DOWNLOADER = "matter_crawler.core.downloader.SlotConcurrencyDownloader"
# FIFO queues keep listing pages in page order; one domain needs no downloader-aware queue
SCHEDULER = "matter_crawler.core.scheduler.DelayedRequestScheduler"
SCHEDULER_PRIORITY_QUEUE = "scrapy.pqueues.ScrapyPriorityQueue"
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"
# Scrapy starts CONCURRENT_ITEMS worker tasks for every callback's output; our
# callbacks yield one item or a page of 12 cards, so one task does; Scrapy's 100 cost
# more CPU than parsing the page (docs/benchmarks.md, "Issue 19": 1 against 16, 11%
# less CPU under load, the same on an idle machine)
CONCURRENT_ITEMS = 1
LOG_LEVEL = "INFO"
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19's remote-control server runs Python sent to it; our /status does the watching
REMOTE_CONTROL_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
# Python's garbage collector (matter_crawler.extensions.gc_tuning): a young collection
# every 10,000 allocations rather than 700 (0: Python's own), and gc.freeze() once the
# engine has started, so full collections skip what start-up built
GC_GEN0_THRESHOLD = 10_000
GC_FREEZE_AT_START = True

# Stock components this crawl has no use for cost CPU on every request.
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "matter_crawler.middlewares.retry.ClassifiedRetryMiddleware": 550,
    # only loaded with RENDERING_FORCE
    "matter_crawler.rendering.middleware.ForcedRenderingMiddleware": 600,
    "matter_crawler.middlewares.breaker.CircuitBreakerMiddleware": 610,
    "scrapy.downloadermiddlewares.httpauth.HttpAuthMiddleware": None,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": None,
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    # closest to the spider: a page whose callback raised is dead-lettered, never lost
    "matter_crawler.middlewares.callback_errors.CallbackErrorMiddleware": 1100,
    # closest to the engine: the end of each page's task (PROGRESS_TASK_EVENTS)
    "matter_crawler.extensions.task_events.TaskEventsMiddleware": 10,
}

ITEM_PIPELINES = {
    "matter_crawler.pipelines.validation.ValidationPipeline": 100,
    "matter_crawler.pipelines.store.BatchStorePipeline": 800,
}
EXTENSIONS = {
    # Scrapy's MemoryUsage read the peak of the process that started the crawl as its own
    "scrapy.extensions.memusage.MemoryUsage": None,
    "matter_crawler.extensions.memusage.ProcessMemoryUsage": 0,
    # first: one crawl writes to a database at a time (DATABASE_LOCK)
    "matter_crawler.extensions.database_lock.DatabaseLock": 50,
    # the dead-letter store closes before the run record counts the letters
    "matter_crawler.extensions.dead_letters.DeadLetterStore": 100,
    "matter_crawler.extensions.run_record.RunRecorder": 200,
    # stops the crawl when the site's markup no longer matches the parsers
    "matter_crawler.extensions.drift.MarkupDriftMonitor": 250,
    # replaces AutoThrottle; refuses to start if AUTOTHROTTLE_ENABLED is on too
    "matter_crawler.adaptive.extension.AdaptiveConcurrency": 300,
    # monitoring (docs/monitoring.md): metrics, then live progress; both share one HTTP server
    "matter_crawler.extensions.prometheus.PrometheusExporter": 400,
    "matter_crawler.extensions.progress.ProgressMonitor": 410,
    # pause, resume, stop, profile switch from the live page or `scrapy control`
    "matter_crawler.extensions.control.CrawlControl": 420,
    # rewrites the Atom feed at FEED_ATOM_PATH when a crawl ends (off while it is empty)
    "matter_crawler.extensions.feed.AtomFeedWriter": 500,
    # rewrites the HTML report at REPORT_HTML_PATH when a crawl ends (off while it is empty)
    "matter_crawler.extensions.report.HtmlReportWriter": 510,
    # fewer and shorter garbage collections (GC_GEN0_THRESHOLD, GC_FREEZE_AT_START)
    "matter_crawler.extensions.gc_tuning.GarbageCollectorTuning": 900,
}

# -- what the data guarantees (README "What the data guarantees") ---------------------------
# A full run confirms each stored product it did not see before delisting it; more than
# this share of the stored products unseen means a broken listing: nothing is delisted.
DELIST_MAX_SHARE = 0.05
# The most listing pages any pagination is believed (evidence bounds it lower: twice the
# previous run's page count or the stored products / 12, plus 10 pages).
LISTING_MAX_PAGES = 20_000
# refresh=changed also fetches the pages stored longest ago: each page read at least once
# in this many days, about stored products / this many pages a day (0: off).
REFRESH_MAX_AGE_DAYS = 30.0
# Markup drift: more than this share of the pages read failing validation or the content
# check (once DRIFT_MIN_PAGES have been read) stops the crawl (1.0: off).
DRIFT_MAX_SHARE = 0.2
DRIFT_MIN_PAGES = 24

# -- classified retry (see matter_crawler.middlewares.retry) -------------------------------
RETRY_POLICIES: dict = {}  # overrides of DEFAULT_POLICIES, e.g. {"server": {"attempts": 3}}
RETRY_AFTER_MAX = 300.0
RETRY_MAX_TOTAL_ATTEMPTS = 12
RETRY_CONTENT_CHECK = "matter_crawler.parsing.content.ContentCheck"
# script elements holding a marker the content check steps over before it calls the
# page not a catalogue page (a real page has none or one; the cap bounds the check's work)
CONTENT_CHECK_MAX_SCRIPTS = 1000
RETRY_JITTER_SEED = None  # a number makes the backoff jitter reproducible (tests)

# -- circuit breaker (see matter_crawler.middlewares.breaker) ----------------------------
CIRCUIT_BREAKER_ENABLED = True
CIRCUIT_FAILURE_THRESHOLD = 10
CIRCUIT_FAILURE_RATIO = 0.8
CIRCUIT_WINDOW = 50
CIRCUIT_COOLDOWN = 10.0
CIRCUIT_COOLDOWN_MAX = 120.0
CIRCUIT_HALF_OPEN_PROBES = 1
CIRCUIT_CLOSE_AFTER = 2

# -- validation (see matter_crawler.pipelines.validation) ---------------------------------
VALIDATION_REQUIRED_FIELDS = ["url", "manufacturer", "model", "certificate_id"]
# "" turns the check off; the upper bound keeps ids to what real ones look like
VALIDATION_CERTIFICATE_PATTERN = r"^CSA[0-9A-Z]{5,32}-[0-9]{2}$"
# Longest value each field may have, in characters (lists and mappings: their JSON text);
# longer makes the product invalid (a dead letter), never cut. Real values are far
# shorter (a certificate id is 19 characters, a version about 25, a model name rarely
# 80); sized columns (url 512, certificate_id 64, vid/pid 8, ...) must hold the bound.
# Override single fields with VALIDATION_MAX_LENGTHS, e.g. {"description": 10000}.
VALIDATION_MAX_LENGTHS_BASE = {
    "url": 512,
    "manufacturer": 200,
    "model": 200,
    "device_type": 100,
    "certificate_id": 64,
    "certification_date": 10,
    "software_version": 64,
    "hardware_version": 64,
    "firmware_version": 64,
    "vid": 8,
    "pid": 8,
    "family_id": 64,
    "family_sku": 256,
    "family_variant_sku": 256,
    "specification_version": 16,
    "transport_interface": 256,
    "primary_device_type_id": 8,
    "application_categories": 512,
    "description": 5000,
    "compliance_document_url": 1024,
    "extra_fields": 4096,
}
VALIDATION_MAX_LENGTHS: dict = {}

# -- storage ---------------------------------------------------------------------------
RUN_RECORD_ENABLED = True  # the crawl_runs row
DEAD_LETTERS_ENABLED = True  # the dead_letters table
# 1,000 rather than 500: a batch rewrites the index pages it touches (random URLs and
# certificate ids), so larger batches write less per product (bench/store_throughput.py:
# about 32,500 -> 35,500 items/s here); the flush interval still bounds a batch's age.
STORE_BATCH_SIZE = 1000
STORE_FLUSH_INTERVAL = 2.0
# a batch the database refuses for a reason that may pass (locked, disk full) is tried
# this many times in all, STORE_RETRY_BACKOFF seconds after the first refusal, twice as
# long after each next one; then item by item (see matter_crawler.pipelines.store)
STORE_RETRY_ATTEMPTS = 5
STORE_RETRY_BACKOFF = 1.0
DATABASE_BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another connection's lock
# one crawl writes to a database at a time: "refuse" a second one at start, or "wait"
DATABASE_LOCK = "refuse"
DATABASE_LOCK_HEARTBEAT = 30.0  # seconds between the holder's heartbeats
# SQLite: a lock held from another host is taken over when its heartbeat is this old
# (seconds); on the same host, when its process is gone. (PostgreSQL: when the server
# has released it, at the end of its holder's session.)
DATABASE_LOCK_STALE_AFTER = 300.0
DEAD_LETTER_FLUSH_INTERVAL = 5.0
JOBDIR_STATE_SAVE_INTERVAL = 30.0

# -- JavaScript rendering (see matter_crawler.rendering) ---------------------------------
RENDERING_ENABLED = True  # render JavaScript-only pages when a browser is found
RENDERING_FORCE = False  # render every listing and product page
PLAYWRIGHT_BROWSER_PATH = ""  # else $PLAYWRIGHT_BROWSER_PATH, else /usr/bin/chromium
RENDERING_HEADLESS = True
RENDERING_WAIT_TIMEOUT = 15.0
# The browser runs the target's JavaScript: it is confined (docs/security.md).
# auto: Chromium's sandbox on, except as root, where Chromium cannot run it (a warning says so)
RENDERING_SANDBOX = "auto"
# origins the browser may reach besides CSA_BASE_URL's (e.g. a CDN the site's scripts need);
# every other request a rendered page makes, to loopback and private addresses too, is blocked
RENDERING_ALLOWED_ORIGINS: list[str] = []
# the only environment variables the browser gets (a trailing * is a prefix): no secrets
RENDERING_BROWSER_ENV = [
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR",
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_*", "FONTCONFIG_*",
]  # fmt: skip

# -- adaptive concurrency (see matter_crawler.adaptive, docs/adaptive.md) ---------------------
# Bounds (ADAPTIVE_MIN/MAX_CONCURRENCY, ADAPTIVE_MIN/MAX_DELAY, ADAPTIVE_TARGET_LATENCY,
# ADAPTIVE_MEMORY_LIMIT_MB) come from CRAWL_PROFILE (matter_crawler.profiles); with the
# extension on, an explicit CONCURRENT_REQUESTS_PER_DOMAIN / DOWNLOAD_DELAY narrows them.
ADAPTIVE_CONCURRENCY_ENABLED = True  # False: fixed concurrency, or AUTOTHROTTLE_ENABLED=True
# politeness ceiling per domain (and its subdomains), whatever the profile and whatever
# sets the slots (this extension, AutoThrottle, fixed settings): SlotConcurrencyDownloader
# enforces it. The predecessor crawled the real site at 1 request/s, 3 at a time.
# the most specific entry wins: the DCL's observer node has its own, lower ceiling
ADAPTIVE_DOMAIN_LIMITS = {
    "csa-iot.org": {"max_concurrency": 3, "min_delay": 1.0},
    "on.dcl.csa-iot.org": {"max_concurrency": 2, "min_delay": 0.5},
}
ADAPTIVE_TROUBLE_STATUSES = [408, 429, 502, 503, 504, 522, 524]  # "too busy" answers
ADAPTIVE_LATENCY_TOLERANCE = 2.0  # a round slower than this times the baseline is a rise
ADAPTIVE_DECREASE_FACTOR = 0.5  # the cut when a level that was fine brings trouble
ADAPTIVE_PROBE_INTERVAL = 5.0  # seconds at one below a known ceiling before probing it
ADAPTIVE_PROBE_INTERVAL_MAX = 15.0  # the wait doubles after each failed probe, up to this
ADAPTIVE_BASELINE_WINDOW = 60.0  # the baseline latency is the minimum over 1-2 windows
ADAPTIVE_MEMORY_CHECK_INTERVAL = 2.0  # seconds between resident-memory readings
ADAPTIVE_DEBUG = False  # log every decision at INFO

# -- monitoring (see docs/monitoring.md) ---------------------------------------------------
# One local HTTP server per crawl: /metrics, /status, /events (SSE) and / (the live page).
MONITORING_SERVER_ENABLED = True
# Where it listens (the old names PROMETHEUS_HOST/PROMETHEUS_PORT still work, with a warning)
MONITORING_HOST = "127.0.0.1"
MONITORING_PORT = "9410-9430"  # a port, a range (first free one; parallel jobs), or 0 (any)
# Host names the server answers to besides 127.0.0.1, localhost, [::1] and MONITORING_HOST
# (any other Host header gets 421: DNS rebinding), e.g. ["crawler-1.internal"]
MONITORING_ALLOWED_HOSTS: list[str] = []
PROMETHEUS_ENABLED = True  # the /metrics exporter, SD registration and push
PROMETHEUS_SD_FILE = None  # a file_sd JSON file Prometheus watches (deploy/prometheus.yml)
# e.g. "http://127.0.0.1:9091": push final metrics at close; None: $MATTER_PUSHGATEWAY_URL.
# Basic auth from the URL (user:password@) or $MATTER_PUSHGATEWAY_USERNAME/_PASSWORD
PROMETHEUS_PUSHGATEWAY_URL = None
PROGRESS_ENABLED = True  # snapshots, ETA, task events, /status, /events, the live page
PROGRESS_INTERVAL = 1.0  # seconds between progress snapshots
PROGRESS_RATE_WINDOW = 10.0  # seconds: the fast rate behind the ETA (the slow one: 6x)
PROGRESS_LOG_INTERVAL = 10.0  # seconds between progress lines in the log (0: none)
PROGRESS_BAR = "auto"  # a progress bar on stderr: auto (when a terminal), true, false
PROGRESS_EVENTS_FILE = None  # JSON-lines events file; %(name)s, %(job)s, %(time)s replaced
PROGRESS_RECENT_TASKS = 100  # finished tasks a newly opened live page is shown
PROGRESS_TASK_EVENTS = True  # task events: started, and its end with duration_ms
# What local clients may hold (0: no limit). Over MONITORING_MAX_CONNECTIONS a connection is
# closed at once; over MONITORING_MAX_CLIENTS an /events client gets 503 with Retry-After; an
# /events client with more than MONITORING_CLIENT_BUFFER bytes unread, or that reads nothing
# for MONITORING_IDLE_TIMEOUT seconds, is dropped; so is a connection without a request.
MONITORING_MAX_CONNECTIONS = 64
MONITORING_MAX_CLIENTS = 10
MONITORING_CLIENT_BUFFER = 256 * 1024
MONITORING_IDLE_TIMEOUT = 30.0
# Live control (POST /control/...: pause, resume, stop, profile), authenticated by a random
# per-crawl token in a file of mode 0600: this path, else JOBDIR/matter_crawler.control-token,
# else <SQLite database file>.control-token; with none of these the control is off.
CONTROL_ENABLED = True
CONTROL_TOKEN_FILE = None

# -- commands (see docs/commands.md) ---------------------------------------------------------
# `scrapy export`: longest the database may take to produce the next rows (0: no limit)
EXPORT_QUERY_TIMEOUT = 60.0
# `scrapy record-site`: largest page recorded, as sent and decompressed (a bigger one is refused)
RECORD_MAX_PAGE_SIZE = 4 * 1024 * 1024
# `scrapy feed` and the feed extension: an Atom file rewritten at the end of every crawl
# (empty: none), of the products new in the last FEED_ATOM_DAYS days, at most FEED_ATOM_LIMIT
# entries, plus the kinds of FEED_ATOM_INCLUDE ("changed", "delisted")
FEED_ATOM_PATH = ""
FEED_ATOM_DAYS = 30.0
FEED_ATOM_LIMIT = 200
FEED_ATOM_INCLUDE: list[str] = []
# the HTML report (scrapy report, the whole period) rewritten at the end of every crawl, and
# linked from the live page (empty: none)
REPORT_HTML_PATH = ""
