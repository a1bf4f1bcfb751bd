"""Operators that reverse loyalty transactions taken from XCom."""
