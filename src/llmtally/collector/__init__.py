"""Collector-side code: cost enrichment of gen_ai spans from apps that do not use llmtally, and
collector configuration generation."""
