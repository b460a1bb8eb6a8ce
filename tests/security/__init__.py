"""Black-box security tests against the running local stack, beside unit tests of each check (issue 14)."""
