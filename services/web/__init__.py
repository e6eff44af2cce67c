"""The page and its gRPC-web front: browsers encrypt in the page and call the services."""
