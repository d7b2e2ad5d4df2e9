"""``python -m repflow_core.kernels [build|info]``: build the native CPU kernel ahead of time, or say
which fused kernels this machine has."""

from __future__ import annotations

import argparse
import sys

from . import REGISTRY, available_impls, native_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repflow_core.kernels",
                                     description="Build or inspect the fused kernels of the flow layer.")
    parser.add_argument("command", choices=["build", "info"], nargs="?", default="info")
    parser.add_argument("--dir", default=None, help="build into this directory (default: the cache directory)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a library is found")
    args = parser.parse_args(argv)
    if args.command == "build":
        try:
            path = native_build.build(args.dir, force=args.force)
        except native_build.BuildError as exc:
            print(f"build failed: {exc}", file=sys.stderr)
            return 1
        print(path)
        return 0
    print(f"compiler: {native_build.compiler()}")
    searched = ", ".join(map(str, native_build.search_dirs()))
    print(f"library: {native_build.find_built() or 'not built'} (searched {searched})")
    for device, kernels in REGISTRY.items():
        names = ", ".join(k.name for k in kernels) or "none"
        print(f"{device}: registered [{names}]; usable impls {available_impls(device)}")
    error = native_build.native_error()
    if error:
        print(f"native kernel unavailable: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
