"""Deraining architectures; importing this package registers every one of them."""

from . import cpraformer, ddsaformer, dmsr, drsformer  # noqa: F401  (registration)
