"""Tests of the vendor sandbox, over real HTTP on loopback."""
