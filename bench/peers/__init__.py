"""Peer schedulers, run in the same benchmark on the same MariaDB and Redis."""
