"""The engine on Kafka: orchestrator processors, activity workers, timers, topics."""
