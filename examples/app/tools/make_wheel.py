#!/usr/bin/env python3
"""Builds the example app's only dependency, zcp-example-dep, as a wheel.

The example app ships its dependency inside the release (vendor/) so that installing it
needs no package index: `pip install --no-index --find-links ./vendor`. The package is
tiny on purpose; it exists so that a deploy has a real lockfile and a real install to
reuse or redo. Its version is visible at the app's /version endpoint.

    python3 tools/make_wheel.py 1.0.0 vendor/

The output is byte-for-byte reproducible for a given version (fixed timestamps, sorted
entries), so rebuilding the committed wheel does not change it.
"""
import base64
import hashlib
import pathlib
import sys
import zipfile

NAME = "zcp_example_dep"
DIST = "zcp-example-dep"
EPOCH = (2020, 1, 1, 0, 0, 0)


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build(version: str, out_dir: pathlib.Path) -> pathlib.Path:
    info = f"{NAME}-{version}.dist-info"
    files = {
        f"{NAME}/__init__.py": (
            '"""A stand-in dependency of the zcp example app."""\n'
            f'__version__ = "{version}"\n\n\n'
            "def describe() -> str:\n"
            f'    return "{DIST} " + __version__\n'
        ).encode(),
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {DIST}\n"
            f"Version: {version}\n"
            "Summary: A stand-in dependency of the zcp example app\n"
        ).encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\n"
            "Generator: zcp make_wheel.py\n"
            "Root-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ).encode(),
    }
    record = "".join(f"{path},{record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            entry = zipfile.ZipInfo(path, EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, files[path])
    return wheel


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: make_wheel.py VERSION OUT_DIR", file=sys.stderr)
        return 2
    print(build(sys.argv[1], pathlib.Path(sys.argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
