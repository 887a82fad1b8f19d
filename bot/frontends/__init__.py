"""Platform adapters. Each gets a Core and its options; none imports another."""

from __future__ import annotations


class FrontendError(Exception):
    """A front-end cannot run (bad token, missing intent …); the message says how to fix it."""
