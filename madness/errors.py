"""The one exception type meant for users: its message is printed as a single line."""


class UserError(Exception):
    """Bad input from the user: a wrong value, file, column or season. Printed without traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
