"""ONNX test-data folders as tests (being written)."""


def collect_directory(path, parent):
    return None
