"""Talking to Ray: connecting, checking resources and placement, and running a command as a Ray job."""
