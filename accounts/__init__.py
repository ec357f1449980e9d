"""Accounts: users, registration, login, sessions, roles."""
