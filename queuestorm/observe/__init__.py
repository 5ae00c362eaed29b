"""What a run samples over time: vitals, connections, the timeline, the stats line."""
