"""Click attribution: join impressions with the clicks that follow within ten minutes.

Both topics are keyed by impression id. A left join keeps impressions that were
never clicked; per ad, the pipeline counts impressions and clicks.

    dataflow plan examples/clicks.py
"""
from datetime import datetime

from dataflow import Flow, Record, agg, col, fn


class Impression(Record):
    impression_id: str
    ad_id: str
    ts: datetime


class Click(Record):
    impression_id: str
    ts: datetime


flow = Flow("clicks")

impressions = flow.source("impressions", key=str, value=Impression, timestamp="ts")
clicks = flow.source("clicks", key=str, value=Click, timestamp="ts")
matched = impressions.join(clicks, within="10m", how="left", name="matched")
attributed = matched.map(
    {"impression_id": col("impression_id"), "ad_id": col("ad_id"), "clicked": col("clicks_ts").is_not_null()},
    name="attributed",
)
attributed.to("attributed-impressions")
per_ad = attributed.group_by("ad_id").aggregate(
    impressions=agg.count(), clicks=agg.sum(fn.if_(col("clicked"), 1, 0)), name="per_ad"
)
per_ad.changes().to("ad-stats")
