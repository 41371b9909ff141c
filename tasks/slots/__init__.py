"""Per-business slots and the job registry: every piece of recplay's state in Redis.

``keys`` names every key; ``client`` holds the process-wide connection and reads Redis's clock; the Lua scripts
of ``lua/`` (loaded by ``scripts``) change the state atomically; ``semaphore`` is the slot semaphore of one
business and ``jobs`` the job registry keyed by (business_id, call_sid).
"""
