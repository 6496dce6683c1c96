"""The one exception type meant for users: its message is printed as a single line."""


class UserError(Exception):
    """Bad input from the user: a wrong value, file, column or season. Printed without traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def first_line(err: BaseException) -> str:
    """Return the first line of the error's message, or the name of its type when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
