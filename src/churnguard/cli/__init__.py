"""The ``churnguard`` command: one sub-command per job, each a thin call into the library.

The parser is in ``parser``; the handlers, grouped by what they work on, in ``data``, ``models``,
``scores`` and ``keys``. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from churnguard.cli.parser import build_parser

if TYPE_CHECKING:
    from churnguard.config import Settings

_LIBRARIES = r"(sklearn|lightgbm|mlflow|pandas|numpy|scipy|pydantic|sqlalchemy|alembic)\b"

Handler = Callable[[argparse.Namespace, "Settings"], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    from churnguard.config import Settings
    from churnguard.domain.problems import DataContractError
    from churnguard.store.database import StoreUnavailableError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # library warnings speak to developers, not to users (-v shows them)
        warnings.filterwarnings("ignore", module=_LIBRARIES)
    handler: Handler = args.handler
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid settings (CHURNGUARD_* variables or .env):\n{exc}", file=sys.stderr)
        return 1
    try:
        return handler(args, settings)
    except DataContractError as exc:
        print(f"error: the data breaks the CRM data contract:\n{exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # a database refused, missing or unknown
    except (OperationalError, StoreUnavailableError, ArgumentError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)]
        print(f"error: the database could not be used: {reason[0]}", file=sys.stderr)
        return 1
