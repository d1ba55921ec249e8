"""Quality of the labels: agreement between labelers, gold items, the review of prompts, and their pages."""
