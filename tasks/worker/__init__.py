"""What runs inside ``celery -A tasks worker``.

``tasks`` holds the Celery tasks (thin), ``download`` the download attempt, ``held`` the slots this process
holds, ``hooks`` every signal connection in one ordered list, ``broker`` the broker transport.
"""
