"""The table of ``qosinspect flows``: one row per exchange, the time and count of every step.

A view of the analysis' exchanges table (selected columns, ``conn_id`` shown as ``conn``) with the
command's filters, as a library function so that the command, a notebook and a test get the same
rows; :func:`qosinspect.report.output.write_table` writes it in any format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..analysis.api import Analysis

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FLOW_COLUMNS", "flows_frame"]

#: The columns of ``flows`` (``conn`` is the exchanges table's ``conn_id``).
FLOW_COLUMNS = ("ex_id", "client_id", "conn", "direction", "qos", "packet_id", "generation",
                "topic", "t_publish", "n_publish", "dup_seen", "t_puback", "t_pubrec",
                "t_pubrel", "n_pubrel", "t_pubcomp", "last_step", "retransmissions", "outcome",
                "latency_ms", "cause")


def flows_frame(analysis: Analysis, *, qos: int | None = None, client: str | None = None,
                outcome: str | None = None, direction: str | None = None) -> pd.DataFrame:
    """The exchanges of ``analysis`` as ``flows`` lists them (:data:`FLOW_COLUMNS`), only those
    of ``qos``, of ``client`` (a client id, or the session key such as ``conn:3`` that the
    ladder and the report name a connection without CONNECT by), with ``outcome`` (one of
    :data:`~qosinspect.analysis.records.OUTCOMES`, or ``incomplete``: open at the end, abandoned
    or evicted, as the report counts them), sent in
    ``direction`` (``c2b``/``b2c``), when given."""
    from ..analysis.metrics import INCOMPLETE_OUTCOMES
    from ..analysis.tables import exchanges_frame

    needed = {"client_id", "session", "conn_id", "qos", "outcome", "direction"} | set(FLOW_COLUMNS)
    ex = exchanges_frame(analysis.result, sorted(needed - {"conn"}))
    if qos is not None:
        ex = ex[ex["qos"] == qos]
    if client is not None:
        ex = ex[(ex["client_id"] == client) | (ex["session"] == client)]
    if outcome == "incomplete":  # the report's word: not completed nor refused, whatever the end
        ex = ex[ex["outcome"].isin(INCOMPLETE_OUTCOMES)]
    elif outcome is not None:
        ex = ex[ex["outcome"] == outcome]
    if direction is not None:
        ex = ex[ex["direction"] == direction]
    return ex.rename(columns={"conn_id": "conn"})[list(FLOW_COLUMNS)].reset_index(drop=True)
