"""Training jobs: records and states, the local executor and queue, the papermill runner, status."""
