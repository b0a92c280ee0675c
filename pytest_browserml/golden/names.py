"""Which golden files a test maps to, and which collected tests a golden file belongs to.

One mapping serves the fixture (where a test reads and writes), the session's
account of unused goldens and `browserml goldens approve`, so they cannot
disagree.  A test's name is its pytest name minus this plugin's EP parameter:
`test_m.py::test_x[wasm-a/b]` maps to `test_m/test_x[a%2Fb].npz`, or, per EP,
`test_x[a%2Fb][wasm].npz`.  Characters that a file name cannot hold portably are
escaped as `%XX` (and `%` itself), so two different names never share a file;
plain names read as before.  Pure standard library.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..browser.launch import EP_NAMES, WEBNN_DEVICE_TYPES
from .store import OBTAINED_NPZ, GoldenFiles

_NPZ = ".npz"
# Path separators, the Windows drive colon, what Windows forbids and the escape itself.
_ESCAPED = frozenset('%/\\:<>"|?*')
# as a str.translate table (C speed: the xdist controller indexes every collected test of every worker)
_ESCAPE_TABLE = {code: f"%{code:02X}" for code in (*map(ord, _ESCAPED), *range(0x20), 0x7F)}


def escape(text: str) -> str:
    """`text` as one portable file-name part; different texts never give the same part."""
    return text.translate(_ESCAPE_TABLE)


def ep_tag(ep_id: str) -> str:
    """How an EP id appears in a file name: `webnn:gpu` as `webnn_gpu` (no EP id holds `_`)."""
    return ep_id.replace(":", "_")


EP_TAGS = (*EP_NAMES, *(f"webnn_{device}" for device in WEBNN_DEVICE_TYPES))


@dataclass(frozen=True, order=True)
class GoldenKey:
    """The goldens of one test: `<module stem>/<test>.npz`, shared by every EP, and `<test>[<ep>].npz`."""

    module: str  # the test module's stem
    test: str  # the test's name without the EP parameter, or assert_golden's name=

    def __post_init__(self) -> None:
        if escape(self.module) in ("", ".", ".."):
            raise ValueError(f"module stem {self.module!r} would place goldens outside the golden folder")

    @classmethod
    def of_node(cls, nodeid: str) -> tuple[GoldenKey, str]:
        """The key of a collected test and its id without the EP (`path::Class::test[params]`).

        This plugin parametrizes first (its hook is tryfirst), so its id is the
        first of the node's ids; ids are joined with `-`, which no EP id holds.
        """
        path, _, rest = nodeid.partition("::")
        head, bracket, params = rest.partition("[")
        others = params[:-1].partition("-")[2] if bracket and params.endswith("]") else ""
        suffix = f"[{others}]" if others else ""
        return cls(Path(path).stem, head.rpartition("::")[2] + suffix), f"{path}::{head}{suffix}"

    def stem(self, ep: str | None = None) -> str:
        """The golden's file name without `.npz`: shared when ep is None, else that EP's own."""
        return escape(self.test) + (f"[{ep_tag(ep)}]" if ep else "")

    def golden(self, golden_dir: Path, ep: str | None = None) -> GoldenFiles:
        return GoldenFiles(Path(golden_dir) / escape(self.module) / (self.stem(ep) + _NPZ))

    def obtained(self, golden_dir: Path, ep: str) -> GoldenFiles:
        """What a failing run on `ep` produced: one pair per EP, so EPs never overwrite or delete each other's."""
        return GoldenFiles(Path(golden_dir) / escape(self.module) / (self.stem(ep) + OBTAINED_NPZ))

    def legacy_golden(self, golden_dir: Path, ep: str | None = None) -> Path:
        """Where releases before escaping kept this golden (`/`, `\\`, `:` and controls became `_`)."""
        def squeeze(text: str) -> str:
            return "".join("_" if char in "/\\:" or ord(char) < 0x20 or ord(char) == 0x7F else char for char in text)
        name = squeeze(self.test) + (f"[{ep_tag(ep)}]" if ep else "")
        return Path(golden_dir) / squeeze(self.module) / (name + _NPZ)


class GoldenIndex:
    """Every golden file name the collected tests map to, whatever the EP, and the tests behind each."""

    def __init__(self, golden_dir: Path) -> None:
        self.golden_dir = Path(golden_dir)
        self.test_ids: set[str] = set()
        self.folders: set[str] = set()  # the golden folders of the collected modules
        self._by_file: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(self, nodeid: str) -> None:
        key, test_id = GoldenKey.of_node(nodeid)
        self.test_ids.add(test_id)
        folder = escape(key.module)
        self.folders.add(folder)
        for ep in (None, *EP_TAGS):
            self._by_file[folder, key.stem(ep)].add(test_id)

    def owners(self, npz: Path) -> set[str]:
        """The collected tests whose name maps to this golden (assert_golden(name=...) aside: see the sidecar)."""
        try:
            relative = Path(npz).relative_to(self.golden_dir)
        except ValueError:
            return set()
        if len(relative.parts) != 2 or not relative.name.endswith(_NPZ):
            return set()
        return set(self._by_file.get((relative.parts[0], relative.name[: -len(_NPZ)]), ()))

    def collisions(self) -> dict[str, frozenset[str]]:
        """A line per set of tests that would share a golden file (also where only case differs), and the tests."""
        folded: dict[tuple[str, str], tuple[tuple[str, str], set[str]]] = {}
        for (folder, stem), tests in sorted(self._by_file.items()):
            first, sharing = folded.setdefault((folder.casefold(), stem.casefold()), ((folder, stem), set()))
            sharing |= tests
        reported: dict[frozenset[str], str] = {}
        for (folder, stem), tests in folded.values():
            if len(tests) > 1:
                reported.setdefault(frozenset(tests), f"{self.golden_dir.name}/{folder}/{stem}{_NPZ} would be the "
                                                      f"golden of {' and of '.join(sorted(tests))}")
        return {line: tests for tests, line in sorted(reported.items(), key=lambda item: item[1])}

    @classmethod
    def of(cls, golden_dir: Path, nodeids: Iterable[str]) -> GoldenIndex:
        index = cls(golden_dir)
        for nodeid in nodeids:
            index.add(nodeid)
        return index
