"""Parsing of the small scalar values users type: booleans."""

TRUE = {"true", "yes", "on", "1", ""}
FALSE = {"false", "no", "off", "0"}


def parse_bool(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case); a bare flag counts as true."""
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false, yes/no, on/off, 1/0)")
