"""The enqueue hot path, without Locust: runtime, enqueue, pacer, timing, failures."""
