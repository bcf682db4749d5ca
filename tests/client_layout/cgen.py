"""Write C declarations for ctypes classes — a stand-in header for testing the probe itself.

Only for the test's self-check (does the probe find a planted mismatch?); the project's header is
include/net/pfvar.h, written independently.  Private nested types (leading "_") are emitted inline
as anonymous struct/union members, like the C header does.
"""
import ctypes

_SCALARS = {
    ctypes.c_char: "char", ctypes.c_uint8: "unsigned char", ctypes.c_int8: "signed char",
    ctypes.c_uint16: "unsigned short", ctypes.c_int16: "short",
    ctypes.c_uint32: "unsigned int", ctypes.c_int32: "int",
    ctypes.c_uint64: "unsigned long long", ctypes.c_int64: "long long",
    ctypes.c_long: "long", ctypes.c_ulong: "unsigned long", ctypes.c_void_p: "void *",
}


def _scalar(t):
    for k, v in _SCALARS.items():
        if t is k or (ctypes.sizeof(t) == ctypes.sizeof(k) and t._type_ == k._type_):
            return v
    raise TypeError(t)


def _kw(t):
    return "union" if issubclass(t, ctypes.Union) else "struct"


def _attr(t):
    return " __attribute__((packed))" if getattr(t, "_pack_", 0) == 1 else ""


def _member(name, t, indent, override=None):
    if override and name in override:
        return f"{indent}{override[name]};"
    dims = []
    while issubclass(t, ctypes.Array):
        dims.append(t._length_)
        t = t._type_
    suffix = "".join(f"[{d}]" for d in dims)
    if issubclass(t, (ctypes.Structure, ctypes.Union)):
        if t.__name__.startswith("_"):
            body = _body(t, indent + "\t")
            return f"{indent}{_kw(t)} {{\n{body}\n{indent}}}{_attr(t)} {name}{suffix};"
        return f"{indent}{_kw(t)} {t.__name__} {name}{suffix};"
    ty = _scalar(t)
    sep = "" if ty.endswith("*") else " "
    return f"{indent}{ty}{sep}{name}{suffix};"


def _body(t, indent, override=None):
    return "\n".join(_member(f[0], f[1], indent, override) for f in t._fields_)


def declare(t, override=None):
    """C definition of record type `t`; `override` maps member name -> replacement declaration."""
    return f"{_kw(t)} {t.__name__} {{\n{_body(t, chr(9), override)}\n}}{_attr(t)};\n"


def header(structs, commands, constants, overrides=None, command_macros=None):
    """A whole header: the records, `#define`s of the commands (via Linux's <sys/ioctl.h>
    macros when `command_macros` maps name -> (macro, nr, struct tag or C type)), constants."""
    overrides = overrides or {}
    out = ["#ifndef _TEST_PFVAR_H", "#define _TEST_PFVAR_H", "#include <sys/ioctl.h>", ""]
    for t in structs:
        out.append(declare(t, overrides.get(t.__name__)))
    for name, value in commands.items():
        if command_macros and name in command_macros:
            macro, nr, arg = command_macros[name]
            out.append(f"#define {name} {macro}('D', {nr}{', ' + arg if arg else ''})")
        else:
            out.append(f"#define {name} 0x{value:08x}U")
    for name, value in constants.items():
        out.append(f"#define {name} {value}")
    out += ["", "#endif"]
    return "\n".join(out) + "\n"
