"""Package: generate the service, build the bento, export it."""
