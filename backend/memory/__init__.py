"""Memory: readings (the one place that measures), request middleware, Prometheus metrics."""
