"""curate: preference-data curation (prompt, chosen, rejected) with vLLM, DuckLake and Prefect."""

__version__ = "0.1.0"
