"""Operations tooling for Headrace: a real local Kafka, and later topic setup, benchmarks, chaos."""
