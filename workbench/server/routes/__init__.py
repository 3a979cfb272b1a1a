"""The REST routes, one module per area of the API reference.

Each module declares its operations on an :class:`~workbench.server.openapi.Registry`;
``create_app`` collects them, orders them so literal path segments win over parameters,
and builds ``/openapi.json`` from the same declarations.
"""
