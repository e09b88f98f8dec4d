"""
Build the wheel and check that the dropin ships without Twisted's own
package files: no twisted/__init__.py, no twisted/plugins/__init__.py, no
dropin.cache.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, "."],
            check=True,
        )
        [wheel] = Path(out).glob("upgrade_plugin-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
    forbidden = [
        n
        for n in names
        if n in ("twisted/__init__.py", "twisted/plugins/__init__.py")
        or n.endswith("dropin.cache")
    ]
    print("\n".join(names))
    if forbidden:
        print("forbidden files in the wheel:", forbidden)
        return 1
    if not any(n.startswith("upgrade_plugin/") for n in names):
        print("the package is missing from the wheel")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
