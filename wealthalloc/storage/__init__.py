"""Persistence: PostgreSQL (psycopg 3, plain SQL, no ORM) and Redis.

``wealthalloc.storage.migrate`` brings a database to the schema of this code; the
numbered SQL files under ``migrations/`` are the schema's one definition. Nothing is
re-exported here on purpose: a package attribute named ``migrate`` would shadow the
``migrate`` module of the same name.
"""
