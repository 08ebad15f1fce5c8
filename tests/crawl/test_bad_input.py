"""Bad input gets a clear error and loses nothing: the simulated site's hostile pages."""

from __future__ import annotations

from ..helpers import crawl_runs, database_differences, query, run_crawl

# what each hostile kind's dead letter must say
EXPECTED_REASONS = {
    "missing_fields": ("invalid", "certificate_id is missing"),
    "oversized": ("permanent", "DownloadCancelledError"),
    "redirect_loop": ("permanent", "redirect loop"),
    "offsite_link": ("offsite", "off-site"),
}


def test_hostile_pages_are_stored_or_dead_lettered_with_a_reason(simulated_site, database_url):
    site = simulated_site(products=90, seed=11, hostile=True)
    truth = site.truth()
    hostile = site.hostile()
    assert {h["kind"] for h in hostile} == {"malformed_html", *EXPECTED_REASONS}

    # pages over 1 MiB are not catalogue pages (the project default is 10 MiB)
    run_crawl(site.base_url, database_url, settings={"DOWNLOAD_MAXSIZE": 1024 * 1024}).check()

    # every storable product is stored, field by field, the malformed page included
    assert database_differences(database_url, truth) == []
    malformed = next(h["url"] for h in hostile if h["kind"] == "malformed_html")
    assert malformed in {record["url"] for record in truth}

    # texts that look like script or SQL are stored verbatim
    hostile_texts = [
        value
        for record in truth
        for value in (record["model"], record["description"], record["manufacturer"])
        if value and ("<script>" in value or "DROP TABLE" in value)
    ]
    assert len(hostile_texts) >= 2
    stored_texts = {
        value
        for row in query(database_url, "select model, description, manufacturer from products")
        for value in row
    }
    assert set(hostile_texts) <= stored_texts
    assert query(database_url, "select count(*) from sqlite_master where name='products'") == [(1,)]

    # every product the site cannot serve properly is a dead letter with its reason
    letters = {
        url.split("/csa_product/", 1)[1]: (failure_class, error)
        for url, failure_class, error in query(
            database_url, "select url, failure_class, last_error from dead_letters"
        )
    }
    for product in hostile:
        if product["expect"] != "dead_letter":
            continue
        slug = product["url"].split("/csa_product/", 1)[1]
        assert slug in letters, f"{product['kind']} product {product['url']} was lost"
        failure_class, error = letters[slug]
        expected_class, expected_words = EXPECTED_REASONS[product["kind"]]
        assert failure_class == expected_class, (product["kind"], error)
        assert expected_words in error, (product["kind"], error)
    assert len(letters) == len(EXPECTED_REASONS)

    run = crawl_runs(database_url)[-1]
    assert run["status"] == "finished"
    assert run["dead_letters"] == len(EXPECTED_REASONS)
    assert run["items_invalid"] == 1
    # the listing was complete, but nothing was delisted: dead letters are not "gone"
    assert query(database_url, "select count(*) from products where delisted_at is not null") == [
        (0,)
    ]
