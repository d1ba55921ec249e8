"""Prompt queues: their settings and instructions versions, prompt imports, the queue pages and the dashboard."""
