"""HTTP routes, one module per resource (deployments/routes/app.py includes them in a replica's app)."""
