"""User-facing errors: one clear line naming the bad key, file or name, and the fix."""


class LLCVError(Exception):
    """An error caused by the user's input (options, data, paths); printed without a traceback."""


class OptionError(LLCVError):
    """An option file or override is invalid; the message starts with the dotted key path."""


class DataError(LLCVError):
    """A data file or LMDB entry cannot be used; the message names the file or key."""


class ArgumentError(OptionError, ValueError):
    """A bad constructor argument of a component; the message starts with the argument name.

    It is a ``ValueError`` for code that builds components directly, and an ``OptionError`` so
    that building from options prefixes the dotted key (``network_g.widths: ...``).
    """
