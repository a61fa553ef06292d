"""How every benchmark ends: the table and its targets, printed and written to results/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def finish(report: str, checks: Sequence[tuple[str, bool]], *, title: str, command: str, out: Path | None) -> int:
    """Print ``report`` with PASS/FAIL per target, write it to ``out`` (unless None); exit status."""
    report += "\n\n" + "\n".join(f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks)
    print(f"`{command}`\n\n{report}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"# {title}\n\n`{command}`\n\n{report}\n")
    return 0 if all(ok for _, ok in checks) else 1
