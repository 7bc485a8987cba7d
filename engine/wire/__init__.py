"""Wire formats of the engine's topics, shared by the engine, the clients, the API and the tools.

Not in `engine/runtime`: reading a record's format needs no Kafka runtime, and the REST API and the
ops tools decode the same records.
"""
