"""Giving the database connection back, in one place.

Whatever waits on something slow (a provider, an open stream, a job's handler thread) gives
its thread's connection back first — closed, or back to the pool — and Django reconnects on the
next query, so open streams and parked calls never exhaust the connection limit."""

from django.db import connection


def connection_give_back() -> None:
    """Close this thread's database connection now. Inside an atomic block (a transaction
    still to finish, or a test's) there is nothing to give back, and nothing is done."""
    if not connection.in_atomic_block:
        connection.close()
