"""KServe v2 over HTTP/REST: the second front door over the same runtime as the gRPC servicer.

`codec` reads and writes the protocol's JSON and binary tensor bodies, `errors` maps edgeq's
error tree to HTTP statuses (once), `routes` is the aiohttp application and its site.
"""
