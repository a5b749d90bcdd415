#!/usr/bin/env python3
"""A screenshot of a running cluster's status page, as docs/operations.md's picture is made:
headless Chromium loads GET / from a node's ops port through a loopback relay that presents an
administrator's certificate (test_status_page.py's AdminRelay), with no other host resolvable.

  tests/integration/status_page_shot.py --url https://localhost:8454 \\
      --cert run/quickstart/pki/admin.pem --key run/quickstart/pki/admin-key.pem \\
      --ca-file run/quickstart/pki/adcs-proxy-ca.pem --out docs/images/status-page.png

Exit status: 0 written, 1 the page or Chromium failed, 2 usage."""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_status_page import AdminRelay, chromium, png_size  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="https://HOST:PORT of a node's ops listener")
    p.add_argument("--cert", required=True, help="administrator's certificate (PEM), pinned in ops.admin_pins")
    p.add_argument("--key", required=True)
    p.add_argument("--ca-file", required=True, help="CA of the node's ops certificate")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2000)
    args = p.parse_args()
    relay = AdminRelay(args.url.rstrip("/"), args.cert, args.key, args.ca_file)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            dom, _, shot = chromium(relay.url + "/", Path(scratch), args.width, args.height, "page")
            if "<title>adcsc" not in dom or not shot.exists():
                print(f"status_page_shot: no status page at {args.url} (an administrator's certificate pinned "
                      f"in ops.admin_pins?)", file=sys.stderr)
                return 1
            png_size(shot)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.out)
    finally:
        relay.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
