"""The libraries the benchmarks compare, one module each, all with the interface of
:class:`candidates.base.Candidate`. A worker process imports exactly one of them."""

#: Candidate name -> (module, environment): ``project`` is this project's virtual environment,
#: ``peer`` the isolated one with the peer's NNsight.
CANDIDATES = {
    "transformers": ("transformers_floor", "project"),
    "nnsight": ("nnsight_bare", "project"),
    "nnspec": ("nnspec_lib", "project"),
    "nnsight-peer": ("nnsight_bare", "peer"),
    "nnterp": ("nnterp_lib", "peer"),
}
