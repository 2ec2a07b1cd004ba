"""Built-in executors: ``serial`` (this process) and ``ray`` (the workers of a Ray cluster)."""
