"""Browser tests of the labeler pages (headless Chromium via Playwright)."""
