"""Flower's settings, read from the working directory by ``celery -A tasks flower``.

Every ``tasks.download`` runs with ``args = [business_id, call_sid]``: the task list shows them in its
``args`` column, and Flower's search finds a download by its call_sid. Basic auth comes from the environment
(``FLOWER_BASIC_AUTH=user:password[,user2:password2]``); any option here can be overridden the same way
(``FLOWER_<OPTION>``) or on the command line.
"""

tasks_columns = "name,uuid,state,args,received,started,runtime,worker,retries"
# Keep the newest tasks only: Flower holds its task list in memory.
max_tasks = 10000
