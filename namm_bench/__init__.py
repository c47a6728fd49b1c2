"""namm-bench: benchmark learned KV-cache memory (NAMMs) against full cache, H2O and L2.

The core (this package) is torch only: memory policies, the NAMM, and the memory controller
that attaches them to any Hugging Face model on the ``Cache`` API through forward hooks.
"""

__version__ = "0.1.0"
