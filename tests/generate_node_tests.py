"""Write ONNX's node test cases as test-data folders, for `pytest --browser-ep wasm DEST`.

Usage: python tests/generate_node_tests.py DEST [--limit N] [--pattern GLOB ...]

The cases come from the installed onnx package (no download): DEST/node/<case>/
holds model.onnx and test_data_set_0/{input,output}_K.pb, written by ONNX's own
writer (onnx.backend.test.cmd_tools.generate_data). Cases whose IR version or
opset is newer than onnxruntime-web accepts are written too: their failure is
what the suite has to say about them; the count is printed as a note.
"""

from __future__ import annotations

import argparse
import fnmatch
import warnings
from pathlib import Path
from unittest import mock

# What onnxruntime-web 1.30 loads; newer models fail to load, and the note says how many.
ORT_WEB_MAX_IR = 13
ORT_WEB_MAX_OPSET = 26


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to write into (cases go to DEST/node/<case>)")
    parser.add_argument("--limit", type=int, help="write at most N cases")
    parser.add_argument("--pattern", action="append", help="only cases whose name matches this glob; repeatable")
    args = parser.parse_args(argv)

    import onnx.backend.test.case.model as model_cases
    import onnx.backend.test.case.node as node_cases
    from onnx.backend.test import cmd_tools

    with warnings.catch_warnings():  # the case generators overflow and divide by zero on purpose
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    cases = [case for case in cases if not args.pattern or any(fnmatch.fnmatch(case.name, p) for p in args.pattern)]
    cases = cases[:args.limit]
    # ONNX's writer reads its cases from the model-test collector: hand it the node cases instead.
    with mock.patch.object(model_cases, "collect_testcases", return_value=cases):
        cmd_tools.generate_data(argparse.Namespace(output=str(args.dest)))

    too_new = sum(1 for case in cases if case.model.ir_version > ORT_WEB_MAX_IR or any(
        opset.version > ORT_WEB_MAX_OPSET for opset in case.model.opset_import if opset.domain in ("", "ai.onnx")))
    print(f"wrote {len(cases)} ONNX node test cases to {args.dest / 'node'}")
    if too_new:
        print(f"note: {too_new} of them have an IR version above {ORT_WEB_MAX_IR} or an opset above "
              f"{ORT_WEB_MAX_OPSET}, which onnxruntime-web 1.30 rejects: expect them to fail")


if __name__ == "__main__":
    main()
