"""The panel's pages, one module each, every one exposing `routes(panel)`."""
