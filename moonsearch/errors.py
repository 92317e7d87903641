"""Errors meant for the user: the CLI prints their message, never a traceback."""


class MoonsearchError(Exception):
    """A problem the user can fix (bad input, wrong index, missing file)."""


class CatalogError(MoonsearchError):
    """The catalog cannot be read as a whole (duplicate ids, undecodable text, unknown layout)."""


class IndexFormatError(MoonsearchError):
    """An index on disk is missing, incomplete, or made by another encoder or format version."""


class IndexDamagedError(IndexFormatError):
    """A file of an index is missing, cut short or changed since the index recorded it."""


class UnknownProductError(MoonsearchError):
    """A write named product ids the index does not hold (the server answers 404)."""
