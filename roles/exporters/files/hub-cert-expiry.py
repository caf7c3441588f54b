#!/usr/bin/python3
"""Write the expiry of this host's TLS certificates as a node-exporter textfile.

    hub-cert-expiry --textfile DIR/hub_certificates.prom PATTERN [PATTERN ...]

Each PATTERN is a path or a glob (/etc/postgresql/*/main/tls/server.crt); a pattern that
matches nothing writes nothing (the PostgreSQL certificate exists only on the hub). Every
certificate of every matching PEM file gives

    hub_certificate_not_after_timestamp_seconds{path="...",subject="...",serial="..."}  its notAfter
    hub_certificate_read_ok{path="..."}  1, or 0 when the file could not be read or parsed
    hub_certificate_check_timestamp_seconds  when this file was written (a check that stopped
                                             running leaves old dates: HubCertificateCheckStale)

read with `openssl x509`. The file is replaced in one rename (node exporter never reads half
of it). Installed by the exporters role, run hourly by cron as root (keys are never read: only
the .crt files the patterns name). Exit 1 when a file could not be read, 2 for bad arguments.
"""

import argparse
import calendar
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def read_certificates(path: str) -> list[tuple[str, str, float]]:
    """[(subject, serial, notAfter as epoch seconds)] of every certificate in a PEM file."""
    with open(path, encoding="ascii", errors="replace") as fh:
        blocks = PEM.findall(fh.read())
    if not blocks:
        raise ValueError("no PEM certificate in the file")
    found = []
    for block in blocks:
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-subject", "-serial",
                              "-nameopt", "RFC2253"], input=block, capture_output=True,
                             text=True, check=True, timeout=30).stdout
        fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        # notAfter=Mar  4 12:00:00 2036 GMT
        not_after = calendar.timegm(time.strptime(fields["notAfter"].strip(),
                                                  "%b %d %H:%M:%S %Y %Z"))
        found.append((fields.get("subject", "").strip(), fields.get("serial", "").strip(),
                      float(not_after)))
    return found


def render(patterns: list[str], now: float | None = None) -> tuple[str, int]:
    ok_lines, expiry_lines, failed = [], [], 0
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        try:
            certs = read_certificates(path)
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            print(f"hub-cert-expiry: {path}: {exc}", file=sys.stderr)
            ok_lines.append(f'hub_certificate_read_ok{{path="{escape(path)}"}} 0')
            failed += 1
            continue
        ok_lines.append(f'hub_certificate_read_ok{{path="{escape(path)}"}} 1')
        # The serial keeps an old and a renewed certificate of one subject apart in a bundle.
        for subject, serial, not_after in sorted(set(certs)):
            expiry_lines.append(f'hub_certificate_not_after_timestamp_seconds{{path="{escape(path)}",'
                                f'serial="{escape(serial)}",subject="{escape(subject)}"}} '
                                f'{int(not_after)}')
    text = ["# HELP hub_certificate_check_timestamp_seconds when hub-cert-expiry wrote this file",
            "# TYPE hub_certificate_check_timestamp_seconds gauge",
            f"hub_certificate_check_timestamp_seconds {int(time.time() if now is None else now)}"]
    if expiry_lines:
        text += ["# HELP hub_certificate_not_after_timestamp_seconds when the certificate expires",
                 "# TYPE hub_certificate_not_after_timestamp_seconds gauge", *expiry_lines]
    if ok_lines:
        text += ["# HELP hub_certificate_read_ok 1 when the certificate file was read",
                 "# TYPE hub_certificate_read_ok gauge", *ok_lines]
    return "\n".join(text) + "\n", failed


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hub-cert-expiry-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> int:
    ap = argparse.ArgumentParser(prog="hub-cert-expiry", description=__doc__.split("\n\n")[0])
    ap.add_argument("--textfile", required=True, help="the .prom file to write")
    ap.add_argument("patterns", nargs="+", metavar="PATTERN", help="certificate paths or globs")
    args = ap.parse_args()
    if not args.textfile.endswith(".prom") or not os.path.isabs(args.textfile):
        ap.error("--textfile must be an absolute path ending in .prom")
    if not os.path.isdir(os.path.dirname(args.textfile)):
        ap.error(f"--textfile {args.textfile}: its directory does not exist")
    text, failed = render(args.patterns)
    write_atomic(args.textfile, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
