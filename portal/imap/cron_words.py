"""Cron expressions in plain words for the workspace (pure). Unusual ones fall back to the
expression itself; the next-run preview is always exact."""

DAYS = {"0": "Sunday", "1": "Monday", "2": "Tuesday", "3": "Wednesday", "4": "Thursday", "5": "Friday", "6": "Saturday", "7": "Sunday"}
DAY_NAMES = {name[:3].lower(): number for number, name in DAYS.items()}


def _day(value: str) -> str | None:
    value = DAY_NAMES.get(value.lower(), value)
    return DAYS.get(value)


def _weekdays(field: str) -> str | None:
    if field == "*":
        return "every day"
    if field.lower() in ("1-5", "mon-fri"):
        return "on weekdays"
    if field.lower() in ("0,6", "6,0", "sat,sun", "sun,sat"):
        return "on weekends"
    names = [_day(part) for part in field.split(",")]
    if all(names):
        return "on " + ", ".join(names)
    return None


def describe(expression: str) -> str:
    fields = (expression or "").split()
    if len(fields) != 5:
        return expression or ""
    minute, hour, day, month, weekday = fields
    if day != "*" or month != "*":
        return f"cron {expression}"
    days = _weekdays(weekday)
    if days is None:
        return f"cron {expression}"
    suffix = "" if days == "every day" else f" {days}"
    if hour == "*":
        if minute == "*":
            return "every minute" + suffix
        if minute.startswith("*/") and minute[2:].isdigit():
            n = int(minute[2:])
            return ("every minute" if n == 1 else f"every {n} minutes") + suffix
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}" + suffix
        return f"cron {expression}"
    if minute.isdigit() and hour.startswith("*/") and hour[2:].isdigit():
        n = int(hour[2:])
        return (f"every {n} hours" if n > 1 else "every hour") + f" at :{int(minute):02d}" + suffix
    if minute.isdigit() and all(part.isdigit() for part in hour.split(",")):
        times = ", ".join(f"{int(h):02d}:{int(minute):02d}" for h in hour.split(","))
        return f"{days} at {times} UTC"
    return f"cron {expression}"
