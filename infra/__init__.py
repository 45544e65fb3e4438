"""The Pulumi program that builds an estate on AWS (see docs/infra.md)."""
