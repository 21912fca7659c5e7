"""The reviewers' web pages served by the gateway."""
