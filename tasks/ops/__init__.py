"""Operations on the shared state, as library code the beat, the CLI and the ops API call.

``sweeper`` is the periodic recovery pass, ``repair`` the operator's repairs (purge-stuck, purge-queue,
set-limit, retry), ``overview`` the status picture, ``workers`` the liveness of workers (heartbeats, pings).
"""
