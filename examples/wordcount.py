"""Word count: split lines into words, count each word, publish the running counts.

    dataflow plan examples/wordcount.py
    dataflow run examples/wordcount.py --input lines=examples/data/lines.jsonl --output word-counts=- --until-idle
"""
from dataflow import Flow, fn, value

flow = Flow("wordcount")

lines = flow.source("lines", value=str)
words = lines.flat_map(fn.split(fn.lower(value())), name="words")
counts = words.group_by(value(), name="by_word").count(name="counts")
counts.changes().to("word-counts")
