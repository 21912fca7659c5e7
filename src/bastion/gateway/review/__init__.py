"""The reviewers' web pages served by the gateway: pages.py (the handlers), session.py (signed cookies, CSRF)."""

from bastion.gateway.review.pages import UI_KINDS, page_handlers
from bastion.gateway.review.session import COOKIE, Sessions

__all__ = ["COOKIE", "UI_KINDS", "Sessions", "page_handlers"]
