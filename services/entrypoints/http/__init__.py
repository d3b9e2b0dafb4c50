"""The HTTP API over the read models (docs/contract.md, "HTTP API"); OpenAPI at /docs.

Every answer says how fresh it is: `X-Projection-Position` (the allocation log position the
read model has reached) and `X-Projection-Lag` (events it is behind). `?min_position=N`
waits, boundedly, until the read model has reached N: the `source-position` header of a
decision is such an N, so a client can read what it has just seen decided.

`app` builds the application; `routers` hold the endpoints, `schemas` what they answer,
`dependencies` the token check, the freshness wait and the read-model handles.
"""

from services.entrypoints.http.app import create_app

__all__ = ["create_app"]
