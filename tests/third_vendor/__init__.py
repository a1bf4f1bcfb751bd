"""A third vendor that lives in the tests only: it proves a vendor is its own modules plus a spec.

"Vouchery" voids gift vouchers by code (``POST {host}/v1/void`` with ``{"codes": [...]}``; it
answers ``{"results": [{"code": ..., "voided": bool, "error": ...}]}``). Its item, spec, hook and
operator are here; nothing in the package names it (tests/test_third_vendor.py runs it through the
engine, a real ledger file and the Reversals page's API).
"""
