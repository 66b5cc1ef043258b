"""The small scalar values users type: booleans, and how an error quotes a bad value."""

SHOWN = 100  # characters of a bad value an error message repeats
TRUE = {"true", "t", "yes", "on", "1"}
FALSE = {"false", "f", "no", "off", "0"}


def parse_bool(text: str) -> bool:
    """Every spelling Go's strconv.ParseBool takes (1, t, T, TRUE, true, True and their
    opposites), any case, and yes/no, on/off; an empty value is not a boolean."""
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(f"{shown(text)} is not a boolean (use true/false, t/f, yes/no, on/off, 1/0)")


def shown(text: str) -> str:
    """A value as an error message quotes it: its first SHOWN characters."""
    return repr(text[:SHOWN]) + ("..." if len(text) > SHOWN else "")
