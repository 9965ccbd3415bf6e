"""HTTP routes, one module per resource (see deployments/ingress.py for how they are included)."""
