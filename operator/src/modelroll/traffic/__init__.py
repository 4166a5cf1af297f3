"""Traffic routers: the Services (and HTTPRoute) that split traffic between tracks (pure).

A router gets the desired routing — which track is active and how much weight the canary
should get — and returns the objects that realise it. Adding a router is one file.
"""
