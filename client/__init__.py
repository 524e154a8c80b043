"""The sancodec client library and command line."""
