"""Corpus pipeline: raw Chinese/English text to whole-word-masking pretraining shards on Ray Data."""
