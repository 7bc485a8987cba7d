"""`headrace bench`: throughput, latency and cost of the engine on a real broker.

Modules: `apps` (the workflows, importable by engine and worker processes), `scenarios` (what each
named scenario runs and how big), `deploy` (broker, engine and worker processes), `load` (the load
generator and completion follower), `ceiling` (raw aiokafka round trip through the same broker),
`procstats` (CPU and RSS from /proc), `runner` (one scenario end to end), `report` (table, JSON,
PNG), `scale` (`headrace bench scale`: what history costs, issue 16) and `cli` (the command).
"""
