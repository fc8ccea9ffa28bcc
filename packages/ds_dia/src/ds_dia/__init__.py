"""ds_dia: the seed's example application (jobs.md §4.6), shipped as a uv workspace member.

Every host that may run its jobs installs this package, so `module:qualname` names such as
`ds_dia.compute.paglets:DsDiaBundleJobPaglet` import the same class everywhere.
"""
