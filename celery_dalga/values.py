"""Parsing of the small scalar values users type: booleans."""

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
    raise ValueError(f"{text!r} is not a boolean (use true/false, t/f, yes/no, on/off, 1/0)")
