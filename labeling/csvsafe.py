"""CSV cells that a spreadsheet opens as text: shared by the agreement CSV and the dataset exports."""

# A spreadsheet runs a cell that starts with one of these as a formula (usernames and texts are chosen by users).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """Empty for a missing value, true/false for a flag, and text that cannot start a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)
