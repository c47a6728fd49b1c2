"""Evolving NAMMs with CMA-ES (``namm-reference.md`` section 5): config, fitness, loop, export."""
