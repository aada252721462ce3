"""Many inputs rendered in worker processes: the pool (recycled, timed out) and the batch driver."""
