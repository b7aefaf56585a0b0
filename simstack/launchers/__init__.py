"""Launchers start the stand-ins and Toxiproxy; the Stack wires proxies and faults on top."""
