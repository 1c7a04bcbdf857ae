"""The API's endpoints, one router per area; ``api.v1`` mounts them."""
