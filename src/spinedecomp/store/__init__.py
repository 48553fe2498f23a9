"""Persistence: every clinical record, session, event, alarm and telemetry chunk.

SQLite in a data directory by default (rollback journal, foreign keys on), PostgreSQL for real clinics
through the same URL setting. The rest of the code talks to the repositories in
`spinedecomp.store.repositories` through a `Store`, never to SQL.
"""
