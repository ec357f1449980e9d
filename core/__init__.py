"""Shared plumbing: configuration, extensions, money, time, Markdown, security headers."""
