"""mile-vqa: tower-by-tower parameter-efficient fine-tuning of small medical VLMs (MILE, arXiv 2403.06407)."""

__version__ = "0.1.0"
