"""Analysis of what runs wrote: layer similarity, folding, reports, studies, parity, plots, animations."""
