"""The catalog: the durable facts about recordings, in SQL (SQLite by default, PostgreSQL in production).

``models`` defines the table and the catalog states, ``schema`` checks and migrates the database's revision,
``queries`` holds the engines and :class:`~tasks.catalog.queries.Catalog`, every read and write.
"""
