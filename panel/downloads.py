"""A chart's numbers as a CSV download.

UTF-8 with a byte-order mark: without it the spreadsheet an owner opens a CSV in reads the
Persian names as Latin-1 mojibake; with it, they are right and other readers skip it.
"""

from __future__ import annotations

import re

from starlette.responses import Response

from panel.charts import Figure

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def csv_response(figure: Figure, filename: str) -> Response:
    if not _SAFE_NAME.fullmatch(filename) or not filename.endswith(".csv"):
        raise ValueError(f"a download's name is plain ASCII ending in .csv, not {filename!r}")
    return Response("\ufeff" + figure.csv, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})
