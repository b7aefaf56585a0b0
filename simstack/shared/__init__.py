"""What the stand-ins and the client side share: the fault model, triggers, errors and constants.

The stand-ins (``simstack.fakes``) import only this subpackage from simstack, so the stand-ins image
holds (and its staleness hash covers) only ``simstack/__init__.py``, this subpackage and the stand-ins.
"""
