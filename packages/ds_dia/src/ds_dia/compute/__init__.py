"""Compute jobs of ds_dia: the job state (`models`) and the job paglet (`paglets`)."""
