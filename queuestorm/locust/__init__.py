"""queuestorm inside Locust: the listeners, the users, the dyno harness, master and workers."""
