"""Every reader of what the engine committed: the consumer factory (`consumer.py`), the rule for
reading partitions to their end (`to_end.py`) and the status follower (`status.py`)."""
