"""The load test's parts (docs/spec.md §1 "load test", §11), one concept a module;
`scripts/loadtest.py`
is the command and says what a run does.

    stats.py       Failure and the counters every part adds to
    client.py      one player on roomsvc.client: calls, pushes, waiting on a room's state
    players.py     the pool of idle players: connect, hand out, take back, replace the dropped
    games.py       what each kind of game does, from create to leave
    run.py         a run: start players, schedule games for the duration, drain
    report.py      the results as JSON and as a table
    own_server.py  a throwaway store and server, and their CPU time
    cli.py         the command line
"""
