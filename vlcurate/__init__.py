"""vlcurate: clean web image-text pairs and write Qwen-VL training shards, as Apache Beam pipelines."""

__version__ = "0.1.0"
