"""The error a user can fix. Its own light module: the CLI's query commands (``sql``,
``report``, ``catalog``) must not import the pipeline and, with it, torch."""


class UserError(Exception):
    """A problem the user can fix (bad option, no input, output exists): one clear message."""
