"""hub-cert-expiry (roles/exporters/files/), run as cron runs it, on certificates made here with
openssl: the textfile it writes, a file it cannot read, and bad arguments."""

import calendar
import re
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles/exporters/files/hub-cert-expiry.py"


def make_cert(path: Path, cn: str, days: int) -> int:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "/dev/null",
                    "-days", str(days), "-subj", f"/CN={cn}", "-out", str(path)], check=True, capture_output=True)
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)], check=True,
                         capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y %Z"))


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_each_certificate_of_each_matching_file_is_written_with_its_expiry(tmp_path):
    soon = make_cert(tmp_path / "soon.crt", "soon", 10)
    later = make_cert(tmp_path / "later.crt", "later", 400)
    # A bundle: both certificates in one file.
    (tmp_path / "bundle.crt").write_text((tmp_path / "soon.crt").read_text() + (tmp_path / "later.crt").read_text())
    out = tmp_path / "hub_certificates.prom"
    p = run("--textfile", str(out), f"{tmp_path}/*.crt", "/nonexistent/*.crt")
    assert p.returncode == 0, p.stderr
    lines = set(out.read_text().splitlines())
    for name, cn, stamp in (("soon", "soon", soon), ("later", "later", later), ("bundle", "soon", soon),
                            ("bundle", "later", later)):
        assert any(re.fullmatch(rf'hub_certificate_not_after_timestamp_seconds\{{path="{tmp_path}/{name}\.crt",'
                                rf'serial="[0-9A-F]+",subject="CN={cn}"\}} {stamp}', line) for line in lines), (name, cn)
    assert f'hub_certificate_read_ok{{path="{tmp_path}/soon.crt"}} 1' in lines
    assert 10 * 86400 - 120 < soon - time.time() <= 10 * 86400
    checked = [ln for ln in lines if ln.startswith("hub_certificate_check_timestamp_seconds ")]
    assert len(checked) == 1 and abs(int(checked[0].split()[1]) - time.time()) < 60


def test_a_file_that_is_not_a_certificate_is_reported_and_fails_the_run(tmp_path):
    make_cert(tmp_path / "good.crt", "good", 30)
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    out = tmp_path / "hub_certificates.prom"
    p = run("--textfile", str(out), f"{tmp_path}/*.crt")
    assert p.returncode == 1
    assert "bad.crt: no PEM certificate" in p.stderr
    text = out.read_text()
    assert f'hub_certificate_read_ok{{path="{tmp_path}/bad.crt"}} 0' in text
    assert f'path="{tmp_path}/good.crt",serial=' in text and 'subject="CN=good"' in text


def test_bad_arguments_write_nothing(tmp_path):
    for textfile in ("relative.prom", str(tmp_path / "x.txt"), str(tmp_path / "missing" / "x.prom")):
        p = run("--textfile", textfile, "/etc/ssl/*.pem")
        assert p.returncode == 2, textfile
    assert list(tmp_path.iterdir()) == []


def test_a_pattern_that_matches_nothing_still_says_the_check_ran(tmp_path):
    out = tmp_path / "hub_certificates.prom"
    p = run("--textfile", str(out), "/nonexistent/*.crt")
    assert p.returncode == 0, p.stderr
    assert out.read_text().splitlines()[-1].startswith("hub_certificate_check_timestamp_seconds ")
