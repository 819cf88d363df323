"""Routing: which model and deployment serve a request.

Rules and aliases (`rules`), load balancing across deployments (`balance`),
fallbacks on upstream failures (`fallback`), the learned router
(`tokenomy.routing.learned`) and cascades (`cascade`), put together as one
pipeline stage (`stage`).
"""
