"""Deployments: a finished job's checkpoint served as a model people and programs can call.

Providers (``local``, ``runpod-serverless``) share one interface; budgets, usage records and
the OpenAI-compatible inference live here. The server's ``/v1`` and ``/api/inference`` routes
and the deployment panel are thin front-ends over this package.
"""
