"""Fetch the JavaScript the website needs, so that it works with no internet.

A Jupyter Book page loads MathJax, and a page with widgets loads require.js and
the Jupyter widgets html-manager, from public CDNs by default. This script
downloads pinned versions of those packages with ``npm pack`` (no Node.js
project, no node_modules) and unpacks only the files the site needs into
``vendor/`` (git-ignored). ``_config.yml`` adds ``vendor/`` to Sphinx's static
path and points ``mathjax_path`` and ``nb_ipywidgets_js`` at these copies.

Run it from the repository root (``make book`` and ``make test`` do):

    python scripts/vendor_assets.py          # does nothing if vendor/ is complete
    python scripts/vendor_assets.py --force  # fetch again

Needs ``npm`` on the PATH (Debian: ``apt-get install npm``).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"

# package spec -> (folder under vendor/, files to keep: paths inside the package, "dir/" keeps a folder)
PACKAGES = {
    "mathjax@3.2.2": ("mathjax", ["es5/"]),
    "requirejs@2.3.8": ("requirejs", ["require.js"]),
    # html-manager 1.0.x is the one matching ipywidgets 8.1
    "@jupyter-widgets/html-manager@1.0.15": ("html-manager", ["dist/"]),
}
# for the browser tests only (tests/test_site.py and test_site_quiz.py inject axe-core into every page to audit
# accessibility): kept out of vendor/, so that the site does not ship it
TEST_VENDOR = ROOT / "test-vendor"
TEST_PACKAGES = {
    "axe-core@4.14.1": ("axe-core", ["axe.min.js"]),
}
# large files the site never loads
SKIP_SUFFIXES = (".map",)
SKIP_NAMES = {"embed.js", "libembed-amd.js"}
# what _config.yml refers to; if these exist, the vendoring is complete
REQUIRED = [
    "mathjax/es5/tex-mml-chtml.js",
    "requirejs/require.js",
    "html-manager/dist/embed-amd.js",
]
TEST_REQUIRED = ["axe-core/axe.min.js"]
STAMP = VENDOR / ".versions.json"  # a dotfile: Sphinx does not copy it to the site


def complete():
    if not STAMP.exists() or json.loads(STAMP.read_text()) != sorted({**PACKAGES, **TEST_PACKAGES}):
        return False
    return all((VENDOR / p).is_file() for p in REQUIRED) and all((TEST_VENDOR / p).is_file() for p in TEST_REQUIRED)


def keep(name, wanted):
    """Whether the tar member ``package/<name>`` is one of the wanted files."""
    if name.endswith(SKIP_SUFFIXES) or Path(name).name in SKIP_NAMES:
        return False
    return any(name == w or (w.endswith("/") and name.startswith(w)) for w in wanted)


def fetch(spec, folder, wanted, tmp, root=VENDOR):
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("vendor_assets: npm is needed to fetch MathJax, require.js and the widget "
                 "manager for the offline site (Debian: apt-get install npm)")
    out = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", tmp],
                         check=True, capture_output=True, text=True).stdout.split()
    tarball = Path(tmp) / out[-1]
    dest = root / folder
    shutil.rmtree(dest, ignore_errors=True)
    n = 0
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if not member.isfile() or not keep(name, wanted):
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            n += 1
    print(f"vendor_assets: {spec}: {n} files in {root.name}/{folder}/")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch even if vendor/ is complete")
    args = parser.parse_args()
    if complete() and not args.force:
        print("vendor_assets: vendor/ is complete")
        return
    VENDOR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec, (folder, wanted) in PACKAGES.items():
            fetch(spec, folder, wanted, tmp)
        for spec, (folder, wanted) in TEST_PACKAGES.items():
            fetch(spec, folder, wanted, tmp, root=TEST_VENDOR)
    missing = [p for p in REQUIRED if not (VENDOR / p).is_file()]
    missing += [p for p in TEST_REQUIRED if not (TEST_VENDOR / p).is_file()]
    if missing:
        sys.exit(f"vendor_assets: missing after download: {missing}")
    STAMP.write_text(json.dumps(sorted({**PACKAGES, **TEST_PACKAGES})) + "\n")


if __name__ == "__main__":
    main()
