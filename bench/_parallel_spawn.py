"""An experiment on xdist, not the plugin: every popen worker started at once (bench_xdist.py's
`--pytest-args=-p_parallel_spawn`).

pytest-xdist starts its popen workers one after another: each start waits for the child's interpreter and
its import of execnet (pytest-xdist#346; its PR #1229 was closed). On the 16-core machine that is 0.1-0.13 s
a worker under load, so -n 16's last worker starts about 2 s after its first. Loaded with `-p
_parallel_spawn` (bench/ on PYTHONPATH), this starts every plain popen child and sends it execnet's
bootstrap line before xdist sets up its nodes; xdist's own setup then finds each child already serving.
It patches two execnet functions for the length of the setup: how much of -n 16's deficit is the
staggered start, measured rather than guessed.
"""

from __future__ import annotations

import pytest
from execnet import gateway_bootstrap, gateway_io


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs) -> None:
    group = config.pluginmanager.getplugin("dsession").nodemanager.group
    plain = [spec for spec in specs if spec.popen and not (spec.via or spec.python or spec.chdir or spec.nice)]
    started = {}
    for spec in plain:
        io = gateway_io.create_io(spec, execmodel=group.execmodel)
        gateway_bootstrap.sendexec(
            io, "import sys", f"if {gateway_bootstrap.importdir!r} not in sys.path:",
            f"    sys.path.insert(0, {gateway_bootstrap.importdir!r})",
            "from execnet.gateway_base import serve, init_popen_io, get_execmodel",
            "sys.stdout.write('1')", "sys.stdout.flush()", f"execmodel = get_execmodel({spec.execmodel!r})",
            f"serve(init_popen_io(execmodel), id='{spec.id}-worker')")
        started[spec.id] = io
    create_io, bootstrap_import = gateway_io.create_io, gateway_bootstrap.bootstrap_import

    def premade_io(spec, execmodel):
        return started[spec.id] if spec.id in started else create_io(spec, execmodel)

    def answer_only(io, spec) -> None:
        if started.pop(spec.id, None) is not io:
            return bootstrap_import(io, spec)
        assert io.read(1) == b"1"
        if not started:
            gateway_io.create_io, gateway_bootstrap.bootstrap_import = create_io, bootstrap_import

    gateway_io.create_io, gateway_bootstrap.bootstrap_import = premade_io, answer_only
