"""`dispatcher console`: a small web application for operators (docs/operators.md, "Console").

Server-rendered pages over aiohttp and Jinja2: an overview read from the broker and the workers'
own metrics, the dead-letter queue with the CLI's filters, and the CLI's actions (dry run, replay,
purge) through the same library code (`dispatcher.dlq`). It runs as its own process, never inside a
worker.
"""
