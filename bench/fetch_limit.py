"""The machine's limit: fetch the given URLs with a plain asyncio client, no parsing, no storing.

``python bench/fetch_limit.py URLS_FILE --concurrency 16`` prints how many pages
it fetched and how long it took. The other benchmarks run it as the baseline
("what the network and the site allow") in the same run as the crawlers.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp


async def fetch_all(urls: list[str], concurrency: int) -> tuple[int, int]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    ok = failed = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok, failed
            while not queue.empty():
                url = queue.get_nowait()
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        ok += 1
                    else:
                        failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls_file")
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    with open(options.urls_file, encoding="utf-8") as handle:
        urls = [line.strip() for line in handle if line.strip()]
    started = time.monotonic()
    ok, failed = asyncio.run(fetch_all(urls, options.concurrency))
    print(f"fetched {ok} ok, {failed} failed in {time.monotonic() - started:.3f}s")


if __name__ == "__main__":
    main()
