"""The part of ctypes that galley.kernel uses, built directly on the _ctypes extension.

`import ctypes` costs ~8 ms (its __init__ defines every C type, wraps helpers and loads the
Python API library); every galley-runc create paid it twice, once in P and once in the init
stage. This module defines only the types galley calls with, in well under a millisecond. They
behave as ctypes' own: _ctypes decides every conversion from the same `_type_` codes. The type
checker sees ctypes' own declarations.
"""

from __future__ import annotations

import posix
from _ctypes import POINTER, Array, Structure, addressof, byref, get_errno, sizeof

TYPE_CHECKING = False  # not `from typing`: the init stage imports this module
if TYPE_CHECKING:
    from ctypes import (
        CDLL,
        c_char,
        c_char_p,
        c_int,
        c_int32,
        c_long,
        c_size_t,
        c_uint,
        c_uint8,
        c_uint16,
        c_uint32,
        c_uint64,
        c_ulong,
        c_ushort,
        c_void_p,
        create_string_buffer,
        string_at,
    )
else:
    from _ctypes import FUNCFLAG_CDECL, FUNCFLAG_USE_ERRNO, _SimpleCData
    from _ctypes import CFuncPtr as _CFuncPtr
    from _ctypes import dlopen as _dlopen

    def _simple(name: str, code: str) -> type:
        return type(name, (_SimpleCData,), {"_type_": code})

    c_int = c_int32 = _simple("c_int", "i")
    c_uint = c_uint32 = _simple("c_uint", "I")
    c_long = _simple("c_long", "l")
    c_ulong = c_size_t = _simple("c_ulong", "L")  # size_t is unsigned long on Linux
    c_ushort = c_uint16 = _simple("c_ushort", "H")
    c_uint8 = _simple("c_ubyte", "B")
    c_uint64 = _simple("c_uint64", "Q")
    c_char = _simple("c_char", "c")
    c_char_p = _simple("c_char_p", "z")
    c_void_p = _simple("c_void_p", "P")

    def create_string_buffer(init, size=None):
        """A mutable char array: zeroed of size init, or holding init (size bytes at least)."""
        if isinstance(init, int):
            return (c_char * init)()
        buffer = (c_char * (len(init) + 1 if size is None else size))()
        buffer[: len(init)] = init
        return buffer

    def string_at(address):
        """The NUL-terminated string at address."""
        return c_char_p(address).value or b""

    class CDLL:
        """A shared library; attributes are its functions, returning int by default."""

        def __init__(self, name, use_errno=False):
            class Function(_CFuncPtr):
                _flags_ = FUNCFLAG_CDECL | (FUNCFLAG_USE_ERRNO if use_errno else 0)
                _restype_ = c_int

            self._name = name
            self._function = Function
            self._handle = _dlopen(name, posix.RTLD_NOW | posix.RTLD_LOCAL)

        def __getitem__(self, name):
            """A new function object each time (for one symbol declared several ways)."""
            return self._function((name, self))

        def __getattr__(self, name):
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            function = self._function((name, self))
            setattr(self, name, function)
            return function


__all__ = [
    "CDLL",
    "POINTER",
    "Array",
    "Structure",
    "addressof",
    "byref",
    "c_char",
    "c_char_p",
    "c_int",
    "c_int32",
    "c_long",
    "c_size_t",
    "c_uint",
    "c_uint8",
    "c_uint16",
    "c_uint32",
    "c_uint64",
    "c_ulong",
    "c_ushort",
    "c_void_p",
    "create_string_buffer",
    "get_errno",
    "sizeof",
    "string_at",
]
