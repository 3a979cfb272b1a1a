"""Usage analytics: the data endpoint's aggregations, feedback, sentiment insights, cohorts and the assistant."""
