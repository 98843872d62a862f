"""Memory benchmark for portal.imap.parsing.parse_message on one big mail.

Builds a ~26 MB message (a text+HTML alternative and one ~19 MB attachment,
base64: ~25 MB on the wire, as the big mail of ``ingest.py``) and parses it
once in a fresh subprocess per measurement, so that nothing else has touched
the process's memory:

- *tracemalloc peak*: the largest amount of Python memory allocated on top of
  what existed before the call (the raw message is not counted: it exists
  before), and what is still held afterwards (the result: mostly the decoded
  attachment).
- *maxrss delta*: how far the kernel's high-water mark of the resident set
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) rose during the call, in a
  process without tracemalloc (it costs memory of its own).

    .venv/bin/python bench/parse_memory.py [--payload-mb 19] [--parser-file PATH]

``--parser-file`` loads ``parse_message`` from another copy of parsing.py
(e.g. an old version from ``git show``) to compare before/after.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MB = 1_000_000


def make_mail(payload_bytes: int, seed: int = 1) -> bytes:
    """A multipart/mixed mail: text+HTML alternative, one big base64 PDF."""
    rng = random.Random(seed)
    payload = b"%PDF-1.7\n" + rng.randbytes(payload_bytes - 9)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")  # 76 chars + CRLF a line
    del payload
    text = ("Hello support,\r\n\r\nplease find the scanned contract attached.\r\n\r\n" * 20).encode()
    html = (b"<html><body>" + b"<p>please find the scanned contract attached.</p>" * 40
            + b"</body></html>")
    head = (
        b"Return-Path: <user@customer.example>\r\n"
        b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <user@customer.example>\r\n"
        b"To: Support <support@portal.example>\r\n"
        b"Subject: Contract (scan)\r\n"
        b"Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n"
        b"Message-ID: <big.1@customer.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
        b"--mix\r\n"
        b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + b"\r\n"
        b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + b"\r\n"
        b"--alt--\r\n\r\n"
        b"--mix\r\n"
        b'Content-Type: application/pdf; name="contract.pdf"\r\n'
        b'Content-Disposition: attachment; filename="contract.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return b"".join((head, encoded, b"\r\n--mix--\r\n"))


def _load_parser(parser_file: str | None):
    sys.path.insert(0, ROOT)
    if not parser_file:
        from portal.imap.parsing import parse_message

        return parse_message
    import importlib.util

    spec = importlib.util.spec_from_file_location("parsing_under_test", parser_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module.parse_message


def _vm(field: str) -> int:
    """A VmXXX value of /proc/self/status in bytes (0 if unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child(mode: str, mail_file: str, parser_file: str | None) -> dict:
    parse_message = _load_parser(parser_file)
    parse_message(make_mail(3_000))  # warm-up: regexes, caches, mimetypes
    with open(mail_file, "rb", buffering=0) as f:
        raw = f.read()  # one allocation of the file's size
    gc.collect()
    result: dict = {"message_bytes": len(raw)}
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        email = parse_message(raw)
        result["seconds"] = time.perf_counter() - start
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["peak"] = peak - before
        result["retained"] = current - before
    else:
        rss_before = _vm("VmRSS")
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        email = parse_message(raw)
        result["seconds"] = time.perf_counter() - start
        result["maxrss_before"] = maxrss_before
        result["rss_before"] = rss_before
        result["maxrss_delta"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - maxrss_before
    result["payload_bytes"] = sum(len(a.payload) for a in email.attachments)
    result["defects"] = email.defects
    return result


def _run_child(mode: str, mail_file: str, parser_file: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--mail-file", mail_file]
    if parser_file:
        cmd += ["--parser-file", parser_file]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payload-mb", type=float, default=19.0,
                        help="decoded attachment size in MB (default 19: ~25 MB base64)")
    parser.add_argument("--parser-file", help="parsing.py to load parse_message from")
    parser.add_argument("--child", choices=("build", "tracemalloc", "rss"), help=argparse.SUPPRESS)
    parser.add_argument("--mail-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "build":
        with open(args.mail_file, "wb") as f:
            f.write(make_mail(int(args.payload_mb * MB)))
        return
    if args.child:
        print(json.dumps(child(args.child, args.mail_file, args.parser_file)))
        return

    # The mail is built in a subprocess too: Linux carries a process's maxrss
    # high-water mark over fork+exec, so a big parent would hide the children's.
    fd, mail_file = tempfile.mkstemp(prefix="parse_memory_", suffix=".eml")
    os.close(fd)
    try:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "build",
                        "--mail-file", mail_file, "--payload-mb", str(args.payload_mb)], check=True)
        size = os.path.getsize(mail_file)
        traced = _run_child("tracemalloc", mail_file, args.parser_file)
        rss = _run_child("rss", mail_file, args.parser_file)
    finally:
        os.unlink(mail_file)

    payload = traced["payload_bytes"]
    print(f"message:            {size / MB:6.1f} MB  (attachment payload {payload / MB:.1f} MB decoded)"
          + (f"  parser: {args.parser_file}" if args.parser_file else ""))
    print(f"tracemalloc peak:   {traced['peak'] / MB:6.1f} MB  above the raw message "
          f"({traced['peak'] / payload:.2f}x payload, {traced['peak'] / size:.2f}x message); "
          f"retained {traced['retained'] / MB:.1f} MB")
    print(f"maxrss delta:       {rss['maxrss_delta'] / MB:6.1f} MB  "
          f"(RSS before {rss['rss_before'] / MB:.1f} MB, high-water before "
          f"{rss['maxrss_before'] / MB:.1f} MB, after {(rss['maxrss_before'] + rss['maxrss_delta']) / MB:.1f} MB)")
    if rss["maxrss_before"] > rss["rss_before"] + 4 * MB:
        print("  (warning: the high-water mark was already above the RSS before the call, so the "
              "delta understates the parse's peak)")
    print(f"parse time:         {rss['seconds'] * 1000:6.0f} ms  (without tracemalloc)")
    if traced["defects"]:
        print(f"defects: {traced['defects']}")


if __name__ == "__main__":
    main()
