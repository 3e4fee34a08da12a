"""What reads a finished corpus without building anything: ``verify`` checks it against its manifest,
``inspect_corpus`` shows its examples and documents. Neither imports the build (``pipeline``)."""
