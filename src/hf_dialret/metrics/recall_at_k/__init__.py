"""The ``recall_at_k`` evaluate metric; this file makes the folder a package so that pip installs it."""
