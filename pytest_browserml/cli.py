"""The `browserml` console command: what is not a test (install, doctor, serve, goldens approve)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from .browser import provision
from .browser.launch import BrowserSetupError, ExecutionProvider, webgpu_plan
from .browser.launch_plan import ADAPTER_MODES
from .doctor import diagnose
from .golden import approve as golden_approve
from .runner import Settings

DOCTOR_EPS = ["wasm", "webgpu", "webgpu:jsep", "webnn"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="browserml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    install = commands.add_parser("install", help="fetch and pin onnxruntime-web and the pinned Chromium")
    install.add_argument("--ort-web-version", default=provision.ORT_WEB_VERSION)
    install.add_argument("--no-browser", action="store_true", help="fetch onnxruntime-web only")

    doctor = commands.add_parser("doctor", help="report which EPs work here and why not (exit 1 if one does not)")
    doctor.add_argument("--browser-ep", action="append", help="EP to check (repeatable; default: " + ", ".join(DOCTOR_EPS) + ")")
    doctor.add_argument("--browser-executable")
    doctor.add_argument("--browser-channel")
    doctor.add_argument("--ort-web-version", default=provision.ORT_WEB_VERSION)
    doctor.add_argument("--webgpu-adapter", default="auto", choices=ADAPTER_MODES,
                        help="the WebGPU adapter to aim at (as pytest's --webgpu-adapter)")
    doctor.add_argument("--browser-ws-endpoint", action="append", default=[], help="check a browser server instead")
    doctor.add_argument("--timeout", type=float, default=120, help="seconds per check")

    serve = commands.add_parser("serve", help="run a Playwright browser server with the pinned Chromium (or "
                                "another browser) for --browser-ws-endpoint; prints its endpoint")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    serve.add_argument("--browser-executable")
    serve.add_argument("--browser-channel")

    golden_commands = commands.add_parser("goldens", help="work with the golden folder").add_subparsers(
        dest="goldens_command", required=True)
    approve = golden_commands.add_parser("approve", help="list obtained files (e.g. a CI job's artifact) against "
                                         "their goldens; with --yes move them into place")
    approve.add_argument("dir", type=Path, help="folder holding <module>/<test>[<ep>].obtained.npz files")
    approve.add_argument("--golden-dir", type=Path, default=Path("goldens"), help="the golden folder (default: goldens)")
    approve.add_argument("--yes", action="store_true", help="write the approvable ones as goldens")

    args = parser.parse_args(argv)
    if args.command == "goldens":
        return _approve(args)
    try:
        if args.command == "install":
            return _install(args)
        if args.command == "serve":
            return _serve(args)
        return _doctor(args)
    except (provision.ProvisionError, BrowserSetupError) as error:
        print(f"browserml {args.command}: {error}", file=sys.stderr)
        return 2


def _install(args) -> int:
    say = lambda message: print(f"browserml install: {message}", flush=True)  # noqa: E731
    ort = provision.ort_web(args.ort_web_version, progress=say)
    say(f"onnxruntime-web {ort.version} ready in {ort.dist}")
    if not args.no_browser:
        chromium = provision.pinned_chromium(progress=say)
        say(f"Chromium {chromium.version} ready at {chromium.executable}")
    return 0


class _Stopped(Exception):
    """SIGTERM or SIGHUP (docker stop, kill, a closed terminal): stop like Ctrl-C does."""


def _stopped(signum, _frame):
    raise _Stopped(signum)


def _serve(args) -> int:
    from .browser.launch import BrowserChoice
    from .browser.remote import start_server, stop_server

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stopped)
    try:
        process, endpoint = start_server(BrowserChoice.resolve(args.browser_executable, args.browser_channel,
                                                               fetch=True), args.host, args.port)
    except (KeyboardInterrupt, _Stopped):
        return 1
    try:
        print(endpoint, flush=True)
        print("run the tests with: pytest --browser-ws-endpoint " + endpoint, file=sys.stderr, flush=True)
        process.wait()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a second signal must not cut the stop short
            signal.signal(signum, signal.SIG_IGN)
        code = stop_server(process)
    return code


def _approve(args) -> int:
    """Exit 1 when a file was refused (or there was nothing to approve), else 0."""
    approvals = golden_approve.plan(args.dir, args.golden_dir)
    if not approvals:
        print(f"browserml goldens approve: no .obtained.npz files under {args.dir}", file=sys.stderr)
        return 1
    for approval in approvals:
        if approval.refusal:
            print(f"refused {approval.obtained.npz}: {approval.refusal}")
            continue
        print(f"{approval.golden.npz} <- {approval.obtained.npz}")
        for change in approval.changes:
            print(f"  {change}")
        if args.yes:
            golden_approve.apply(approval)
            print(f"  approved: {approval.golden.npz} and {approval.golden.sidecar.name} written")
    if not args.yes and any(approval.refusal is None for approval in approvals):
        print(f"approve them with: {shlex.join(['browserml', 'goldens', 'approve', str(args.dir), '--golden-dir', str(args.golden_dir), '--yes'])}")
    return 1 if any(approval.refusal for approval in approvals) else 0


def _doctor(args) -> int:
    settings = Settings(
        eps=tuple(ExecutionProvider.parse(text) for text in (args.browser_ep or DOCTOR_EPS)),
        strict=True,
        timeout_s=args.timeout,
        ort_web_version=args.ort_web_version,
        browser_executable=args.browser_executable,
        browser_channel=args.browser_channel,
        auto_install=True,
        warmup=0,
        iterations=1,
        ws_endpoints=tuple(args.browser_ws_endpoint),
        webgpu_plan=None if args.browser_ws_endpoint else webgpu_plan(
            args.webgpu_adapter, args.browser_executable, args.browser_channel),
    )
    report = diagnose(settings)
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
