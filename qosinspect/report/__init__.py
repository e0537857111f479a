"""Reports of an analysis: the one output layer (:mod:`.output`: every format, one spelling of
times, what every command writes through), text (:mod:`.text`: the per-QoS report, the ladder),
the flows view (:mod:`.flows`) and plots (:mod:`.plots`, matplotlib, loaded only when asked
for)."""

__all__: list[str] = []
