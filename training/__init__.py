"""Reading the shards for training: datasets (``loader``), masking collators (``collators``), exports (``export``).

Nothing here imports Ray; torch is imported only where a torch object is made.
"""
