"""Data shapes and names: the job body, the keys, the errors, the settings, the option table."""
