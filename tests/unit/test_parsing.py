"""Parser tests on fixture pages: every markup variant of docs/site-markup.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from matter_crawler.parsing import (
    build_product,
    page_number_from_url,
    page_problem,
    parse_date,
    parse_detail,
    parse_id16,
    parse_listing,
)
from matter_crawler.parsing.normalize import label_key, parse_list, parse_yes_no

PAGES = Path(__file__).parent.parent / "fixtures" / "pages"
BASE = "https://csa-iot.org/csa-iot_products/"


def page(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def detail(name: str, url: str = "https://csa-iot.org/csa_product/x/"):
    return build_product(parse_detail(page(name), url), url)


class TestListing:
    def test_post_feed_cards_and_pagination(self):
        listing = parse_listing(page("listing_page1.html"), BASE)
        assert listing.layout == "post-feed"
        assert listing.current_page == 1
        assert listing.last_page == 498  # highest linked page, past the "..." gap
        assert listing.has_next
        assert listing.canonical_url == "https://csa-iot.org/csa-iot_products/"
        assert [
            (c.url, c.manufacturer, c.model, c.certificate_id, c.post_id) for c in listing.cards
        ] == [
            (
                "https://csa-iot.org/csa_product/wi-fi-plug-27/",
                "Shenzhen Example Technology Co., Ltd.",
                "Wi-Fi Plug",
                "CSA22059MAT40059-24",
                99101,
            ),
            (
                "https://csa-iot.org/csa_product/wiz-led-lamp-dimmable-20/",
                "WiZ Connected",
                "WiZ LED Lamp & Dimmable",
                "CSA244D4MAT43911-00",
                99100,
            ),
            (
                "https://csa-iot.org/csa_product/smart-plug-mini-5/",
                "삼성전자 (Samsung Electronics)",
                'Smart Plug <Mini> "5"',
                "CSA23A11MAT41002-01",
                99099,
            ),
            # a card with no certificate line
            (
                "https://csa-iot.org/csa_product/thermostat-3/",
                "Müller Heiztechnik GmbH",
                "Thermostat",
                None,
                99098,
            ),
        ]

    def test_block_container_cert_span_relative_link_and_legacy_pagination(self):
        listing = parse_listing(
            page("listing_block_variant.html"), "https://csa-iot.org/csa-iot_products/page/250/"
        )
        assert listing.layout == "block-index"
        assert listing.current_page == 250
        assert listing.last_page == 512
        assert listing.has_next
        first, second = listing.cards
        assert first.certificate_id == "CSA23B07MAT42210-00"  # from span.entry-cert-id
        assert first.manufacturer == "Acme Locks & Keys Inc."
        assert second.url == "https://csa-iot.org/csa_product/bridge-hub/"  # relative href resolved
        assert second.certificate_id is None
        assert second.manufacturer == "小米 Xiaomi"

    def test_last_page(self):
        listing = parse_listing(page("listing_last_page.html"), BASE)
        assert listing.current_page == 498
        assert listing.last_page == 498
        assert not listing.has_next
        assert len(listing.cards) == 1

    def test_page_without_cards(self):
        listing = parse_listing(b"<html><body><p>Nothing found</p></body></html>", BASE)
        assert listing.cards == ()
        assert listing.layout == "none"
        assert listing.last_page is None

    @pytest.mark.parametrize(
        ("url", "number"),
        [
            ("https://csa-iot.org/csa-iot_products/page/7/?p_keywords=", 7),
            ("https://csa-iot.org/csa-iot_products/?p_type%5B%5D=14&paged=12", 12),
            ("https://csa-iot.org/csa-iot_products/?p_keywords=&#038;paged=3", None),
            ("https://csa-iot.org/csa-iot_products/?p_keywords=&amp;paged=3", 3),
            ("https://csa-iot.org/csa-iot_products/?p_keywords=", None),
        ],
    )
    def test_page_number_from_url(self, url, number):
        assert page_number_from_url(url) == number


class TestDetail:
    def test_standard_layout_matches_the_real_record(self):
        item = detail("detail_standard.html", "https://csa-iot.org/csa_product/wi-fi-plug-19/")
        assert item.problems == []
        assert item.url == "https://csa-iot.org/csa_product/wi-fi-plug-19/"
        assert item.manufacturer == "MMD HONG KONG HOLDING LIMITED"
        assert item.model == "Philips 43PUS8909"
        assert item.device_type == "Matter Device"
        assert item.certificate_id == "CSA244D4MAT43911-00"
        assert item.certification_date == "2025-03-02"
        assert item.software_version == "TPN248E_V248.003.088.000"
        assert item.hardware_version == "M0G"
        assert item.firmware_version is None
        assert (item.vid, item.vid_int, item.pid, item.pid_int) == (
            "0x1358",
            0x1358,
            "0x8004",
            0x8004,
        )
        assert item.family_id == "FAM226196"
        assert item.family_sku == "Philips 43PUS8909"
        assert item.family_variant_sku is None  # an empty value span
        assert item.tis_trp_tested is False
        assert item.specification_version == "1.2"
        assert item.transport_interface == ["Ethernet"]
        assert item.primary_device_type_id == "0x0028"
        assert item.application_categories == ["Matter Device"]
        assert item.description == "A 43-inch 4K smart TV with Matter casting support."
        assert item.compliance_document_url == (
            "https://csa-iot.org/wp-content/uploads/2025/03/CSA244D4MAT43911-00.zip"
        )
        assert item.extra_fields == {}

    def test_legacy_table_layout(self):
        parsed = parse_detail(
            page("detail_legacy_table.html"), "https://csa-iot.org/csa_product/x/"
        )
        assert parsed.layout == "table"
        item = build_product(parsed, "https://csa-iot.org/csa_product/x/")
        assert item.problems == []
        assert item.certificate_id == "CSA23B07MAT42210-00"
        assert item.certification_date == "2023-11-30"
        assert item.vid == "0xFFF1"
        assert item.firmware_version == "2.3.1"
        assert item.tis_trp_tested is True
        assert item.transport_interface == ["Thread", "Bluetooth"]
        assert item.primary_device_type_id == "0x000A"
        assert item.application_categories == ["Door Lock", "Security"]
        assert item.manufacturer == "Acme Locks & Keys Inc."

    def test_label_case_colons_decimal_pid_links_unknown_label_and_hostile_text(self):
        item = detail("detail_variants.html")
        assert item.problems == []
        assert item.certificate_id == "CSA25C11MAT44120-02"  # "CERTIFICATE ID:" wrapping an <a>
        assert item.certification_date == "2025-06-27"
        assert item.vid == "0x1552"
        assert (item.pid, item.pid_int) == ("0x0D02", 3330)  # shown in decimal
        assert item.firmware_version == "1.4.0"  # "Firmware  Version" with two spaces
        assert item.family_id == "FAM331002"  # value wrapped in <a>
        assert item.tis_trp_tested is True
        assert item.transport_interface == ["Wi-Fi", "Bluetooth", "Thread"]
        assert item.primary_device_type_id == "0x0301"
        assert item.extra_fields == {"Certification Type": "Rapid Recertification"}
        assert item.model == "Heizkörperthermostat <script>alert(1)</script>"
        assert item.manufacturer == 'Müller & Söhne "Wärme" GmbH'
        assert item.description == "Robert'); DROP TABLE products;--"
        assert item.application_categories == ["Thermostat", "Climate & HVAC"]
        assert item.compliance_document_url == (
            "https://csa-iot.org/wp-content/uploads/compliance/CSA25C11MAT44120-02.zip"
        )

    def test_unreadable_values_are_named_not_guessed(self):
        item = detail("detail_missing_fields.html")
        assert item.vid is None
        assert item.certification_date is None
        assert item.problems == [
            "Vendor ID: 'not-a-number' is not a hex or decimal id",
            "Certified Date: '31/31/2025' is not a MM/DD/YYYY date",
        ]

    def test_duplicate_label_keeps_first(self):
        html = (
            b"<html><body><h1 class='entry-title'>X</h1><div class='entry-product-details'><div><ul>"
            b"<li class='item'><span class='label'>Vendor ID</span><span class='value'>0x0001</span></li>"
            b"<li class='item'><span class='label'>vendor id:</span><span class='value'>0x0002</span></li>"
            b"</ul></div></div></body></html>"
        )
        item = build_product(parse_detail(html, "https://x/"), "https://x/")
        assert item.vid == "0x0001"
        assert item.problems == ["label 'vendor id' appears twice; kept the first value"]

    def test_malformed_html_does_not_raise(self):
        broken = b"<html><body><h1 class='entry-title'>Lamp<div class='entry-product-details'><ul><li class=item>"
        parsed = parse_detail(broken, "https://x/")
        assert parsed.model == "Lamp"
        assert parsed.fields == ()
        assert parse_detail(b"", "https://x/").layout == "none"


class TestContentCheck:
    def test_complete_pages_pass(self):
        assert page_problem(page("detail_standard.html"), "detail") is None
        assert page_problem(page("detail_legacy_table.html"), "detail") is None
        assert page_problem(page("listing_page1.html"), "list") is None
        assert page_problem(page("listing_block_variant.html"), "list") is None

    def test_truncated_empty_and_wrong_pages(self):
        full = page("detail_standard.html")
        assert "truncated" in page_problem(full[: len(full) // 2], "detail").reason
        assert page_problem(b"  ", "detail").reason == "empty body"
        assert (
            page_problem(page("listing_page1.html"), "detail").reason
            == "no detail markup on the page"
        )

    def test_javascript_shell(self):
        problem = page_problem(page("detail_js_shell.html"), "detail")
        assert problem.needs_javascript
        assert "JavaScript" in problem.reason


class TestNormalisers:
    @pytest.mark.parametrize(
        ("text", "number"),
        [
            ("0x0D02", 0x0D02),
            ("0X1552", 0x1552),
            ("3330", 3330),
            ("FFF1", 0xFFF1),
            (" 0x301 ", 0x301),
        ],
    )
    def test_id16(self, text, number):
        assert parse_id16(text) == number

    @pytest.mark.parametrize("text", ["0x10000", "zzz", "", "-1", "0xG1"])
    def test_bad_id16(self, text):
        with pytest.raises(ValueError, match="id"):
            parse_id16(text)

    def test_dates(self):
        assert parse_date("06/27/2025") == "2025-06-27"
        assert parse_date("2025-06-27") == "2025-06-27"
        with pytest.raises(ValueError, match="MM/DD/YYYY"):
            parse_date("27/06/2025")

    def test_yes_no_lists_and_labels(self):
        assert parse_yes_no(" Yes ") is True
        assert parse_yes_no("no") is False
        with pytest.raises(ValueError, match="neither"):
            parse_yes_no("maybe")
        assert parse_list("Wi-Fi, Bluetooth") == ["Wi-Fi", "Bluetooth"]
        assert parse_list(" Thread ") == ["Thread"]
        assert label_key("  Certified   Date: ") == "certified date"
