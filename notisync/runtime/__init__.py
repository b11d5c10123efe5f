"""Running a node as operators expect: settings for it, logs, metrics, OpenAPI.

Nothing here is on the delivery path except ``metrics.hooks``: one cheap
call per event, a no-op until ``metrics.enable`` runs.
"""
