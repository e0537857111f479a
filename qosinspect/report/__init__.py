"""Reports of an analysis: text (:mod:`.text`: the per-QoS report, tables, the ladder) and
plots (:mod:`.plots`, matplotlib, loaded only when asked for)."""

__all__: list[str] = []
