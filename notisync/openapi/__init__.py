"""The OpenAPI 3.1 document of the REST API, built from the marshmallow schemas."""
