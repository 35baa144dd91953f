"""OCPI 2.2.1, the charge point operator's side: the roaming interface layer (docs/ocpi.md)."""
