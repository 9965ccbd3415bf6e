"""Key-management benchmark: provider wrap/unwrap latency and record encryption throughput.

    .venv/bin/python benchmarks/keys.py

Providers: local (temp root file), aws (in-process moto server), pkcs11 (temp SoftHSM2 token; skipped
with a note if SoftHSM2 is not installed). Records: 512 float32 (2048 bytes) sealed + opened with
RecordCipher vs raw `cryptography` AESGCM in the same run. Prints a table, then one JSON line.

Headline (`records_vs_raw_aesgcm`): the path `tenancy.store.TenantStore` takes, per record: enrolment seals
each face with `RecordCipher.seal` (one call per record, nonce from os.urandom each), activation opens them
with `open_many` in chunks of tenancy.store.faces._DECRYPT_CHUNK (4096). Raw AESGCM does the same work: a nonce
read + encrypt per record, then decrypt per record. Also printed: seal+open one record per call, and the
seal_many/open_many bulk pair (not what the store writes with).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from kms.records import RecordCipher  # noqa: E402

CTX = {"tenant_id": "bench-tenant", "purpose": "tek"}
RECORD_BYTES = 512 * 4
RECORDS = 20_000
AAD = b"securegate/v1|tenant=bench-tenant|record=00000000-0000-4000-8000-000000012345|model=arcface-r100"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_calls(call, n: int) -> list[float]:
    call()  # warm-up (connections, sessions, key handles)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def bench_provider(name: str, provider, n: int) -> dict:
    plaintext, wrapped = provider.generate_data_key(CTX)
    wrap_ms = time_calls(lambda: provider.wrap(plaintext, CTX), n)
    unwrap_ms = time_calls(lambda: provider.unwrap(wrapped, CTX), n)
    return {
        "provider": name, "n": n,
        "wrap_p50_ms": statistics.median(wrap_ms), "wrap_p99_ms": percentile(wrap_ms, 0.99),
        "unwrap_p50_ms": statistics.median(unwrap_ms), "unwrap_p99_ms": percentile(unwrap_ms, 0.99),
    }


def local_provider(workdir: Path):
    from kms.providers.local import LocalKeyProvider

    return LocalKeyProvider(workdir / "root.json"), lambda: None


def aws_provider(workdir: Path):
    from moto.server import ThreadedMotoServer

    from kms.providers.aws import AwsKmsProvider

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    provider = AwsKmsProvider(region="us-east-1", endpoint_url=f"http://{host}:{port}", create_root_if_missing=True)
    return provider, server.stop


def pkcs11_provider(workdir: Path):
    from kms.providers.pkcs11 import Pkcs11KeyProvider, find_module

    util, module = shutil.which("softhsm2-util"), find_module()
    if not util or not module:
        raise RuntimeError("SoftHSM2 not installed")
    (workdir / "tokens").mkdir()
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {workdir / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before the module is loaded
    subprocess.run([util, "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"],
                   check=True, capture_output=True)
    provider = Pkcs11KeyProvider("bench", module_path=module, pin="1234", create_root_if_missing=True)
    return provider, lambda: None


def bench_records(rounds: int = 7) -> dict:
    key = os.urandom(32)
    payloads = [os.urandom(RECORD_BYTES) for _ in range(64)]
    cipher = RecordCipher(key, 1)
    aead = AESGCM(key)

    def record_cipher_run() -> float:
        start = time.perf_counter()
        for i in range(RECORDS):
            sealed = cipher.seal(payloads[i & 63], aad=AAD)
            cipher.open(sealed, aad=AAD)
        return time.perf_counter() - start

    def raw_run() -> float:
        urandom, encrypt, decrypt = os.urandom, aead.encrypt, aead.decrypt
        start = time.perf_counter()
        for i in range(RECORDS):
            nonce = urandom(12)
            decrypt(nonce, encrypt(nonce, payloads[i & 63], AAD), AAD)
        return time.perf_counter() - start

    batch = 1000
    batch_payloads = [payloads[i & 63] for i in range(batch)]
    batch_aads = [AAD] * batch

    def bulk_run() -> float:
        """seal_many/open_many in batches of 1000: the path activation and batch enrolment take. The tokens are
        handed to open_many as SQLite returns them (the stored form is what seal returns)."""
        elapsed = 0.0
        for _ in range(RECORDS // batch):
            start = time.perf_counter()
            sealed = cipher.seal_many(batch_payloads, batch_aads)
            elapsed += time.perf_counter() - start
            start = time.perf_counter()
            cipher.open_many(sealed, batch_aads)
            elapsed += time.perf_counter() - start
        return elapsed

    store_chunk = 4096  # tenancy.store.faces._DECRYPT_CHUNK

    def store_run() -> float:
        """As TenantStore: seal() per record at enrolment, open_many() per chunk of the stored tokens at activation."""
        start = time.perf_counter()
        sealed = [cipher.seal(payloads[i & 63], aad=AAD) for i in range(RECORDS)]
        elapsed = time.perf_counter() - start
        rows = sealed
        aads = [AAD] * store_chunk
        start = time.perf_counter()
        for first in range(0, RECORDS, store_chunk):
            chunk = rows[first : first + store_chunk]
            cipher.open_many(chunk, aads[: len(chunk)])
        return elapsed + time.perf_counter() - start

    def raw_store_run() -> float:
        urandom, encrypt, decrypt = os.urandom, aead.encrypt, aead.decrypt
        start = time.perf_counter()
        sealed = []
        for i in range(RECORDS):
            nonce = urandom(12)
            sealed.append((nonce, encrypt(nonce, payloads[i & 63], AAD)))
        for nonce, ciphertext in sealed:
            decrypt(nonce, ciphertext, AAD)
        return time.perf_counter() - start

    record_cipher_run(), raw_run(), bulk_run(), store_run(), raw_store_run()  # warm-up
    best_rc, best_raw, best_bulk = float("inf"), float("inf"), float("inf")
    best_store, best_raw_store = float("inf"), float("inf")
    for _ in range(rounds):  # interleaved, best-of: robust to noise on a shared 2-core machine
        best_rc = min(best_rc, record_cipher_run())
        best_raw = min(best_raw, raw_run())
        best_bulk = min(best_bulk, bulk_run())
        best_store = min(best_store, store_run())
        best_raw_store = min(best_raw_store, raw_store_run())
    return {
        "records": RECORDS, "record_bytes": RECORD_BYTES,
        "record_cipher_records_per_s": RECORDS / best_rc,
        "record_cipher_bulk_records_per_s": RECORDS / best_bulk,
        "raw_aesgcm_records_per_s": RECORDS / best_raw,
        "record_cipher_mb_per_s": RECORDS * RECORD_BYTES * 2 / best_rc / 1e6,
        "raw_aesgcm_mb_per_s": RECORDS * RECORD_BYTES * 2 / best_raw / 1e6,
        "record_cipher_store_path_records_per_s": RECORDS / best_store,
        "raw_aesgcm_store_path_records_per_s": RECORDS / best_raw_store,
        # Headline: the store's own path (seal per record, open_many per chunk) against the same raw work.
        "records_vs_raw_aesgcm": best_raw_store / best_store,
        "store_path": "seal (per record) + open_many (4096 a chunk)",
        "bulk_vs_raw_aesgcm": best_raw / best_bulk,
        "single_record_vs_raw_aesgcm": best_raw / best_rc,
    }


def main() -> None:
    started = time.perf_counter()
    providers: list[dict] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="securegate-bench-") as tmp:
        for name, factory, n in (("local", local_provider, 500), ("aws", aws_provider, 150), ("pkcs11", pkcs11_provider, 300)):
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                provider, cleanup = factory(workdir)
            except Exception as exc:  # a missing optional backend should not hide the other numbers
                notes.append(f"{name}: skipped ({exc})")
                continue
            try:
                providers.append(bench_provider(name, provider, n))
            finally:
                cleanup()
    records = bench_records()

    print(f"{'provider':<10}{'n':>6}{'wrap p50':>11}{'wrap p99':>11}{'unwrap p50':>12}{'unwrap p99':>12}   (ms)")
    for row in providers:
        print(f"{row['provider']:<10}{row['n']:>6}{row['wrap_p50_ms']:>11.3f}{row['wrap_p99_ms']:>11.3f}"
              f"{row['unwrap_p50_ms']:>12.3f}{row['unwrap_p99_ms']:>12.3f}")
    for note in notes:
        print(note)
    print()
    print(f"records: {RECORDS} x {RECORD_BYTES} B seal+open, AAD {len(AAD)} B")
    print(f"  RecordCipher  {records['record_cipher_records_per_s']:>10.0f} rec/s  {records['record_cipher_mb_per_s']:>8.1f} MB/s")
    print(f"  raw AESGCM    {records['raw_aesgcm_records_per_s']:>10.0f} rec/s  {records['raw_aesgcm_mb_per_s']:>8.1f} MB/s")
    print(f"  bulk (x1000)  {records['record_cipher_bulk_records_per_s']:>10.0f} rec/s")
    print(f"  store path    {records['record_cipher_store_path_records_per_s']:>10.0f} rec/s  (seal per record + open_many); raw the same way {records['raw_aesgcm_store_path_records_per_s']:.0f} rec/s")
    print(f"  ratio, store path {records['records_vs_raw_aesgcm']:.3f} (goal >= 0.9); seal_many/open_many"
          f" {records['bulk_vs_raw_aesgcm']:.3f}; one record per call {records['single_record_vs_raw_aesgcm']:.3f}")
    summary = {
        "benchmark": "keys",
        "providers": {row["provider"]: {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "provider"} for row in providers},
        "skipped": notes,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in records.items()},
        "elapsed_s": round(time.perf_counter() - started, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
