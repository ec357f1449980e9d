"""Campaigns: drafting, launching, committees, updates, listing, search, moderation."""
