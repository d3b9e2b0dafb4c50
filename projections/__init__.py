"""Read models of the allocation log: backorder queue, SKU positions, demand history, orders."""
