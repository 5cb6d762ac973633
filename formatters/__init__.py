"""Output formats: pairs and samples to text, and the shard codecs."""
