"""The exception types the command line turns into a one-line message."""


class FruitkerasError(Exception):
    """A problem with the user's input (files, data, options), not a bug."""

    exit_code = 1


class TrainingInterrupted(FruitkerasError):
    """Ctrl-C during training; the run folder keeps what is needed to resume."""

    exit_code = 130
