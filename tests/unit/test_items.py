"""The item's field lists, read from ``ProductItem`` with itemadapter, agree with the
products table and with the simulated site's own copy of the catalogue record."""

from __future__ import annotations

from itemadapter import ItemAdapter

from matter_crawler.items import PRODUCT_FIELDS, RECORD_FIELDS, ProductItem
from matter_crawler.storage.models import Product
from matter_crawler.verify import TRUTH_FIELDS
from sitesim.truth import TRUTH_KEYS


def test_every_stored_field_is_a_column_and_the_rest_is_marked():
    columns = {column.name for column in Product.__table__.columns}
    assert set(PRODUCT_FIELDS) <= columns
    # what is not stored says so in its field metadata, not in a list kept elsewhere
    left_out = set(ItemAdapter.get_field_names_from_class(ProductItem)) - set(PRODUCT_FIELDS)
    assert left_out == {"problems"}
    assert not ItemAdapter.get_field_meta_from_class(ProductItem, "problems")["stored"]


def test_the_catalogue_record_is_the_sites_and_the_ground_truths():
    # the simulated site keeps its own list on purpose (it imports nothing of the crawler)
    assert RECORD_FIELDS == TRUTH_KEYS
    assert TRUTH_FIELDS == RECORD_FIELDS
    assert [name for name in PRODUCT_FIELDS if name not in RECORD_FIELDS] == ["vid_int", "pid_int"]
