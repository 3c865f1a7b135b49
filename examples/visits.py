"""Web visits: each user's page views, split into sessions by 30 minutes without a view.

A view that comes late and bridges two sessions merges them. `visits` holds every live
session and sends each update (and a retraction for a session merged away); `finished`
sends each session once, when it closes.

    dataflow plan examples/visits.py
"""
from datetime import datetime

from dataflow import Flow, Record, agg, session


class View(Record):
    user: str
    page: str
    ts: datetime


flow = Flow("visits")

views = flow.source("views", value=View, timestamp="ts")
sessions = views.group_by("user").window(session("30m", grace="1m", on="ts"), name="sessions")
visits = sessions.aggregate(views=agg.count(), pages=agg.collect("page"), name="visits")
visits.changes().to("visit-updates")
finished = sessions.aggregate(views=agg.count(), exit=agg.latest("page"), name="finished", emit="final")
finished.changes().to("finished-visits")
