"""A first draft of a mapping file, guessed from samples of someone's CRM export.

Tables are matched to the contract by their names and how many of their columns match; columns by
name (with the words CRMs commonly use), then by content: dates that parse, numbers, ids that are
unique or that point at the clients' ids. Dates written other than ISO 8601 get a date format;
the clients' and contracts' other columns that hold numbers or a few labels are offered, commented
out, as attributes. What cannot be placed is listed in comments, so that ``validate`` and the
user's edit finish the job. Reading the samples is ``data.sample_tables``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import pandas as pd

from churnguard.domain.contract import ATTRIBUTE_NAME, ATTRIBUTE_PREFIXES, TABLES, Column, Kind

_TABLE_WORDS: dict[str, tuple[str, ...]] = {
    "clients": ("clients", "client", "accounts", "account", "customers", "companies", "orgs"),
    "contracts": ("contracts", "subscriptions", "subscription", "retainers", "agreements", "deals"),
    "interactions": ("interactions", "activities", "touchpoints", "communications", "contacts"),
    "feedback": ("feedback", "surveys", "survey", "nps", "responses", "ratings"),
    "invoices": ("invoices", "invoice", "bills", "billing"),
    "tickets": ("tickets", "cases", "support", "issues", "requests"),
    "events": ("events", "usage", "activity", "activity_log", "logs", "tracking"),
}
_COLUMN_WORDS: dict[str, tuple[str, ...]] = {
    "client_id": ("client_id", "account_id", "customer_id", "company_id", "acct", "account"),
    "contract_id": ("contract_id", "subscription_id", "sub_id", "agreement_id", "deal_id"),
    "name": ("name", "account_name", "company", "company_name", "customer_name"),
    "account_manager": ("account_manager", "owner", "csm", "manager", "account_owner", "rep"),
    "segment": ("segment", "tier", "size", "plan_tier"),
    "industry": ("industry", "vertical", "sector"),
    "region": ("region", "country", "territory", "geo", "market"),
    "client_since": ("client_since", "created", "created_at", "signup", "joined", "opened"),
    "service_line": ("service_line", "plan", "product", "service", "plan_name"),
    "start_date": ("start_date", "start", "started", "started_at", "begins", "from"),
    "end_date": ("end_date", "end", "ends", "ended", "ended_at", "expires", "until"),
    "monthly_value": ("monthly_value", "mrr", "monthly", "mrr_cents", "price", "fee"),
    "auto_renew": ("auto_renew", "autorenew", "renews", "auto_renewal"),
    "cancelled_at": ("cancelled_at", "canceled_at", "cancelled", "canceled", "churned_at"),
    "occurred_at": ("occurred_at", "timestamp", "ts", "time", "when", "date", "logged_at"),
    "channel": ("channel", "medium", "type"),
    "direction": ("direction", "inbound_outbound"),
    "submitted_at": ("submitted_at", "submitted", "responded_at", "date"),
    "survey": ("survey", "survey_type", "kind"),
    "score": ("score", "rating", "nps", "value"),
    "comment": ("comment", "text", "feedback", "verbatim"),
    "invoice_id": ("invoice_id", "invoice", "number", "invoice_number"),
    "issued_at": ("issued_at", "issued", "invoice_date", "date"),
    "due_at": ("due_at", "due", "due_date"),
    "amount": ("amount", "total", "value"),
    "paid_at": ("paid_at", "paid", "payment_date"),
    "ticket_id": ("ticket_id", "case_id", "ticket", "case"),
    "opened_at": ("opened_at", "opened", "created_at", "created"),
    "resolved_at": ("resolved_at", "resolved", "closed_at", "closed"),
    "priority": ("priority", "severity", "urgency"),
    "category": ("category", "topic", "type"),
    "event_type": ("event_type", "type", "event", "type_id", "event_code", "action", "kind"),
    "value": ("value", "qty", "quantity", "amount", "count", "duration"),
}
_MIN_SCORE = 0.62  # a column name this similar to a contract word is a candidate
_MIN_TABLE_NAME = 0.7  # a source table named less like a contract table is left to the user
_CODES_LISTED = 40  # event codes written into the draft's value map
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?"
# Date formats tried on a date column that is not ISO 8601, in order (day first before month first)
_DATE_FORMATS = tuple(
    f"{day}{time}"
    for day in ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%d/%m/%y", "%m/%d/%y")
    for time in ("", " %H:%M", " %H:%M:%S")
)
_MAX_LABELS = 30  # a column with at most this many distinct values may be a category attribute


@dataclass
class TableGuess:
    """One contract table's guess: its source, column entries and what is left over."""

    table: str
    source: str
    columns: dict[str, object] = field(default_factory=dict)  # str or a derivation mapping
    notes: dict[str, str] = field(default_factory=dict)  # contract column -> why
    missing: list[str] = field(default_factory=list)  # required columns not found
    unused: list[str] = field(default_factory=list)  # source columns not placed
    filters: list[str] = field(default_factory=list)  # commented filter suggestions
    values: dict[str, list[str]] = field(default_factory=dict)  # column -> codes to name
    date_formats: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (fmt, why)
    attributes: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, column,
    # kind, note: unused columns offered as attributes (commented out)


@dataclass
class Draft:
    """The guessed mapping: matched tables, and the sources that match none."""

    tables: list[TableGuess]
    unplaced: list[str]


def guess_mapping(samples: dict[str, pd.DataFrame]) -> Draft:
    """A draft mapping from samples of the source tables (by file stem or table name)."""
    matched = _match_tables(samples)
    clients = matched.get("clients")
    client_ids = _client_ids(samples[clients]) if clients else pd.Series(dtype="str")
    tables = [
        _guess_table(name, source, samples[source], client_ids) for name, source in matched.items()
    ]
    unplaced = [s for s in samples if s not in matched.values()]
    return Draft(tables, unplaced)


def _words(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")


def _name_score(name: str, words: tuple[str, ...]) -> float:
    """How much a source name looks like one of the words (1: the same)."""
    norm = _words(name)
    best = 0.0
    for word in words:
        if norm == word:
            return 1.0
        tokens = norm.split("_")
        if word in tokens or norm in word.split("_"):
            best = max(best, 0.8)
        best = max(best, SequenceMatcher(None, norm, word).ratio() * 0.9)
    return best


def _match_tables(samples: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Contract table -> source, each source used once, best name and column matches first."""
    scores = []
    for table, spec in TABLES.items():
        for source, frame in samples.items():
            by_name = _name_score(source, (table, *_TABLE_WORDS[table]))
            cols = [c.name for c in spec.columns if c.required]
            found = sum(_best_column(frame, c, set())[1] >= _MIN_SCORE for c in cols) / len(cols)
            if by_name >= _MIN_TABLE_NAME and found >= 0.5:  # named like it, columns to match
                scores.append((by_name + found, table, source))
    matched: dict[str, str] = {}
    for _, table, source in sorted(scores, reverse=True):
        if table not in matched and source not in matched.values():
            matched[table] = source
    return {t: matched[t] for t in TABLES if t in matched}


def _best_column(frame: pd.DataFrame, column: str, taken: set[str]) -> tuple[str | None, float]:
    """The source column whose name best matches a contract column, and how well."""
    words = (column, *_COLUMN_WORDS.get(column, ()))
    options = [(_name_score(str(c), words), str(c)) for c in frame.columns if str(c) not in taken]
    score, name = max(options, default=(0.0, None))
    return name, score


def _client_ids(frame: pd.DataFrame) -> pd.Series:
    name, score = _best_column(frame, "client_id", set())
    if name is None or score < _MIN_SCORE:
        name = _unique_column(frame)
    return frame[name].astype("str") if name else pd.Series(dtype="str")


def _unique_column(frame: pd.DataFrame) -> str | None:
    """The first column whose values are all present and distinct (an id)."""
    for c in frame.columns:
        values = frame[c]
        if len(values) and values.notna().all() and values.is_unique:
            return str(c)
    return None


def _guess_table(table: str, source: str, frame: pd.DataFrame, client_ids: pd.Series) -> TableGuess:
    """Column entries for one contract table from its source sample."""
    guess = TableGuess(table, source)
    taken: set[str] = set()
    for column in TABLES[table].columns:
        entry, note = _guess_column(table, column, frame, taken, client_ids)
        if entry is None:
            if column.required:
                guess.missing.append(column.name)
            continue
        if isinstance(entry, str):
            taken.add(entry)
        elif "column" in entry:
            taken.add(str(entry["column"]))
        guess.columns[column.name] = entry
        guess.notes[column.name] = note
    guess.unused = [str(c) for c in frame.columns if str(c) not in taken]
    guess.filters = _filter_hints(frame, guess.unused)
    guess.date_formats = _date_formats(table, frame, guess.columns)
    if table in ATTRIBUTE_PREFIXES:
        guess.attributes = _attribute_hints(table, frame, guess.unused)
    if "event_type" in guess.columns and isinstance(guess.columns["event_type"], str):
        codes = frame[guess.columns["event_type"]].dropna().astype("str").str.strip()
        if len(codes) and codes.str.fullmatch(r"[0-9]+").all():
            guess.values["event_type"] = sorted(codes.unique(), key=int)[:_CODES_LISTED]
    return guess


def _guess_column(
    table: str, column: Column, frame: pd.DataFrame, taken: set[str], client_ids: pd.Series
) -> tuple[str | dict[str, object] | None, str]:
    """A column entry and the reason for it; (None, "") when nothing fits."""
    if column.name == "client_id" and table != "clients" and len(client_ids):
        name = _referencing_column(frame, client_ids, taken)
        if name:
            return name, "its values are the clients' ids"
    name, score = _best_column(frame, column.name, taken)
    if name is not None and score >= _MIN_SCORE and _content_fits(frame[name], column):
        how = "same name" if _words(name) == column.name else f"name like {column.name}"
        return _scaled_entry(name, column), f"{how}; {_content_note(frame[name], column)}"
    if column.name == TABLES[table].key:
        unique = _unique_column(frame.drop(columns=list(taken)))
        if unique and _name_score(unique, ("id", "key", "number", "no")) >= _MIN_SCORE:
            return unique, "unique on every row"
        return {"row_number": "yes"}, "no id column found: each row's position in the file"
    return None, ""


def _referencing_column(frame: pd.DataFrame, client_ids: pd.Series, taken: set[str]) -> str | None:
    """The column most of whose values are the clients' ids."""
    known = set(client_ids)
    for c in frame.columns:
        values = frame[c].dropna().astype("str")
        if str(c) not in taken and len(values) and values.isin(known).mean() > 0.9:
            return str(c)
    return None


def _content_fits(values: pd.Series, column: Column) -> bool:
    """Whether a sample's values could be the column's (dates parse, numbers are numbers)."""
    present = values.dropna().astype("str").str.strip()
    present = present[present != ""]
    if not len(present):
        return not column.required
    if column.kind == Kind.DATETIME:
        parsed = pd.to_datetime(present, errors="coerce", format="mixed", utc=True)
        return bool(parsed.notna().mean() > 0.9)
    if column.kind == Kind.NUMBER:
        return bool(pd.to_numeric(present, errors="coerce").notna().mean() > 0.9)
    return True


def _date_formats(
    table: str, frame: pd.DataFrame, columns: dict[str, object]
) -> dict[str, tuple[str, str]]:
    """The format of each date column read from a source column whose dates are not ISO 8601."""
    out = {}
    for name, source in columns.items():
        if TABLES[table].column(name).kind == Kind.DATETIME and isinstance(source, str):
            found = _date_format(frame[source])
            if found:
                out[name] = found
    return out


def _date_format(values: pd.Series) -> tuple[str, str] | None:
    """The format of a sample's dates when they are not ISO 8601, and a note; None when they are
    (or when no format tried reads them all)."""
    present = values.dropna().astype("str").str.strip()
    present = present[present != ""]
    if not len(present) or present.str.fullmatch(_ISO_DATE).all():
        return None
    fits = [f for f in _DATE_FORMATS if _reads(present, f)]
    if not fits:
        return None
    shown = ", ".join(repr(v) for v in present.unique()[:2])
    note = f"not ISO 8601: values such as {shown}"
    day, month = "%d/%m", "%m/%d"
    swapped = fits[0].replace(day, month) if day in fits[0] else fits[0].replace(month, day)
    if swapped != fits[0] and swapped in fits:  # every day of the sample is 12 or less
        note += f"; they read as {swapped} too: check which"
    return fits[0], note


def _reads(text: pd.Series, fmt: str) -> bool:
    return bool(pd.to_datetime(text, format=fmt, errors="coerce").notna().all())


def _attribute_hints(
    table: str, frame: pd.DataFrame, unused: list[str]
) -> list[tuple[str, str, str, str]]:
    """Unused columns that could be attributes: numbers, or text with a few distinct labels."""
    hints = []
    for c in unused:
        name = _words(c)
        values = frame[c].dropna().astype("str").str.strip()
        values = values[values != ""]
        if (
            not len(values)
            or not ATTRIBUTE_NAME.fullmatch(name)
            or f"{ATTRIBUTE_PREFIXES[table]}{name}" in TABLES[table].column_names
            or _name_score(name, ("id", "key", "uuid")) >= _MIN_SCORE
        ):
            continue
        shown = ", ".join(repr(v[:20]) for v in values.unique()[:3])
        if pd.to_numeric(values, errors="coerce").notna().all():
            hints.append((name, c, "number", f"numbers such as {shown}"))
        elif values.nunique() <= _MAX_LABELS and values.nunique() < len(values):  # labels repeat
            hints.append((name, c, "category", f"{values.nunique()} labels such as {shown}"))
    return hints


def _content_note(values: pd.Series, column: Column) -> str:
    text = values.dropna().astype("str").str.strip()
    shown = ", ".join(repr(v[:30]) for v in text[text != ""].unique()[:3])
    return f"{column.kind} values such as {shown}" if shown else "empty in the sample"


def _scaled_entry(name: str, column: Column) -> str | dict[str, object]:
    """A plain source name, or a scaled one for amounts kept in cents."""
    if column.kind == Kind.NUMBER and "cent" in _words(name):
        return {"column": name, "scale": "0.01"}
    return name


def _filter_hints(frame: pd.DataFrame, unused: list[str]) -> list[str]:
    """Commented filter suggestions: unused columns with a value that marks non-contract rows."""
    hints = []
    for c in unused:
        values = frame[c].dropna().astype("str").str.strip()
        marks = sorted(v for v in values.unique() if re.search(r"(?i)add.?on|trial|test|demo", v))
        if marks and len(values.unique()) <= 20:
            hints.append(f"drop: {{{c}: [{', '.join(marks)}]}}")
    return hints


def format_draft(draft: Draft, data: str) -> str:
    """The draft as a commented YAML mapping file."""
    lines = [
        f"# churnguard mapping, drafted by `churnguard init --data {data}`.",
        "# Check every guess, fill in what is marked TODO, then run `churnguard validate`.",
        "# Entries: a source column's name, or {row_number: yes}, {concat: [a, b], sep: '-'},",
        "# {constant: value}, {column: name, scale: 0.01}; filters: drop/keep rows by value.",
        "",
        "tables:",
    ]
    lines += [f"  {g.table}: {_quote(g.source)}" for g in draft.tables]
    lines += [f"# {t}: not found in the export" for t in TABLES if t not in _names(draft)]
    lines += ["", "columns:"]
    for g in draft.tables:
        lines += _column_lines(g)
    lines += _filter_lines(draft) + _value_lines(draft) + _date_lines(draft)
    lines += _attribute_lines(draft)
    if draft.unplaced:
        lines += ["", f"# not placed (no contract table matched): {', '.join(draft.unplaced)}"]
    return "\n".join(lines) + "\n"


def _names(draft: Draft) -> set[str]:
    return {g.table for g in draft.tables}


def _column_lines(g: TableGuess) -> list[str]:
    lines = [f"  {g.table}:"]
    for name, entry in g.columns.items():
        lines.append(f"    {name}: {_entry(entry)}  # {g.notes[name]}")
    lines += [f"    # {name}: TODO  (required; no column found)" for name in g.missing]
    if g.unused:
        lines.append(f"    # not used: {', '.join(g.unused)}")
    return lines


def _filter_lines(draft: Draft) -> list[str]:
    hinted = [g for g in draft.tables if g.filters]
    if not hinted:
        return []
    lines = ["", "filters:"]
    for g in hinted:
        lines += [f"  {g.table}:", *(f"    # {hint}  (rows to leave out?)" for hint in g.filters)]
    return lines


def _value_lines(draft: Draft) -> list[str]:
    coded = [g for g in draft.tables if g.values]
    if not coded:
        return []
    lines = ["", "values:"]
    for g in coded:
        lines.append(f"  {g.table}:")
        for column, codes in g.values.items():
            lines.append(f"    {column}:  # numeric codes: give each a name (features use it)")
            lines += [f'      "{code}": "{code}"' for code in codes]
    return lines


def _date_lines(draft: Draft) -> list[str]:
    dated = [g for g in draft.tables if g.date_formats]
    if not dated:
        return []
    lines = ["", "date_format:  # how dates that are not ISO 8601 are written (strptime codes)"]
    for g in dated:
        lines.append(f"  {g.table}:")
        lines += [f"    {c}: {_quote(f)}  # {why}" for c, (f, why) in g.date_formats.items()]
    return lines


def _attribute_lines(draft: Draft) -> list[str]:
    offered = [g for g in draft.tables if g.attributes]
    if not offered:
        return []
    lines = [
        "",
        "attributes:  # other columns as features: uncomment those you want; a number may add",
        "  # direction: more_risk or less_risk (what a higher value means) to be a reason, and",
        "  # label: plain words for the reasons",
    ]
    for g in offered:
        lines.append(f"  {g.table}:")
        lines += [
            f"    # {name}: {{column: {_quote(c)}, kind: {kind}}}  ({note})"
            for name, c, kind, note in g.attributes
        ]
    return lines


def _entry(entry: object) -> str:
    if isinstance(entry, dict):
        return "{" + ", ".join(f"{k}: {_quote(str(v))}" for k, v in entry.items()) + "}"
    return _quote(str(entry))


def _quote(text: str) -> str:
    """Plain YAML when safe, else double-quoted."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*|[0-9]+(\.[0-9]+)?", text)
    return text if plain else f'"{text}"'
