"""The schema of every release before schema revisions: four tables, as of commit c3359a7.

A database made by such a release (``Base.metadata.create_all``) has these tables but no
``alembic_version``: matter_crawler.storage.schema recognises it and records it as this
revision without running it. An empty database gets it run, then every later revision.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crawl_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spider", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("finish_reason", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("pages_planned", sa.Integer(), nullable=True),
        sa.Column("pages_crawled", sa.Integer(), nullable=False),
        sa.Column("products_listed", sa.Integer(), nullable=False),
        sa.Column("products_fetched", sa.Integer(), nullable=False),
        sa.Column("products_new", sa.Integer(), nullable=False),
        sa.Column("products_changed", sa.Integer(), nullable=False),
        sa.Column("products_delisted", sa.Integer(), nullable=False),
        sa.Column("items_invalid", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("dead_letters_resolved", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("failure_class", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )
    op.create_index("ix_dead_letters_resolved_at", "dead_letters", ["resolved_at"])
    op.create_index("ix_dead_letters_run_id", "dead_letters", ["run_id"])
    op.create_table(
        "product_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_url", sa.String(length=512), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_product_changes_product_url", "product_changes", ["product_url"])
    op.create_index("ix_product_changes_run_id", "product_changes", ["run_id"])
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("manufacturer", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("device_type", sa.Text(), nullable=True),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("certification_date", sa.Date(), nullable=True),
        sa.Column("software_version", sa.Text(), nullable=True),
        sa.Column("hardware_version", sa.Text(), nullable=True),
        sa.Column("firmware_version", sa.Text(), nullable=True),
        sa.Column("vid", sa.String(length=8), nullable=True),
        sa.Column("vid_int", sa.Integer(), nullable=True),
        sa.Column("pid", sa.String(length=8), nullable=True),
        sa.Column("pid_int", sa.Integer(), nullable=True),
        sa.Column("family_id", sa.Text(), nullable=True),
        sa.Column("family_sku", sa.Text(), nullable=True),
        sa.Column("family_variant_sku", sa.Text(), nullable=True),
        sa.Column("tis_trp_tested", sa.Boolean(), nullable=True),
        sa.Column("specification_version", sa.String(length=16), nullable=True),
        sa.Column("transport_interface", sa.JSON(), nullable=False),
        sa.Column("primary_device_type_id", sa.String(length=8), nullable=True),
        sa.Column("application_categories", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("compliance_document_url", sa.Text(), nullable=True),
        sa.Column("extra_fields", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_fetched_at", sa.DateTime(), nullable=False),
        sa.Column("first_seen_run_id", sa.Integer(), nullable=True),
        sa.Column("last_seen_run_id", sa.Integer(), nullable=True),
        sa.Column("last_fetched_run_id", sa.Integer(), nullable=True),
        sa.Column("delisted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )
    op.create_index("ix_products_certificate_id", "products", ["certificate_id"])
    op.create_index("ix_products_last_seen_run_id", "products", ["last_seen_run_id"])
    op.create_index("ix_products_vid_int", "products", ["vid_int"])


def downgrade() -> None:
    op.drop_table("products")
    op.drop_table("product_changes")
    op.drop_table("dead_letters")
    op.drop_table("crawl_runs")
