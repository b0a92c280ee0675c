"""A pytest plugin for an experiment (loaded with `-p _bench_quiet_log`): every wasm session is created at ORT's
default log level (2) instead of the plugin's 0, by wrapping ort.InferenceSession.create in the harness page.

It shows what the fix suggested for harness.js would gain (no verbose creation log on wasm, where every node is
on the CPU EP anyway). The placement log is then empty: placement figures are meaningless in this mode."""

from __future__ import annotations

from pytest_browserml import page

PATCH = """async (ortUrl) => {
  const ort = await import(ortUrl);
  const create = ort.InferenceSession.create;
  ort.InferenceSession.create = (model, options) =>
    create.call(ort.InferenceSession, model, options?.executionProviders?.[0] === "wasm"
      ? {...options, logSeverityLevel: 2} : options);
}"""

_original_init = page.HarnessPage.__init__


def _init(self, browser, server, ort_bundle, *args, **kwargs):
    _original_init(self, browser, server, ort_bundle, *args, **kwargs)
    self.page.evaluate(PATCH, server.url(f"ort/{ort_bundle}"))


page.HarnessPage.__init__ = _init
