"""`headrace chaos`: fault injection on a 3-node cluster, with a checker of the invariants (issue 7).

supervisor.py  the cluster and the engine, worker and API processes (kill, stop, pause, restart)
apps.py        the load's workflows (apps_v2.py: one changed, for the non-determinism scenario)
load.py        the load driver over the REST API, recording every acknowledged start
follower.py    which instances finished, while the load runs
faults.py      the fault injectors
checker.py     the verdict: history audit plus status, activity, timer and dead-letter checks
runner.py      one run: steady state, load and faults, drain, verdict
scenarios.py   the scenarios and their short variants; cli.py the command
"""
