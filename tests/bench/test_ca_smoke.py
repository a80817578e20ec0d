"""The CA benchmark runs end to end at a tiny size (no timing assertions: benchmarks are not tests)."""

from __future__ import annotations

from bench.ca import CaCase, figures, measure


def test_ca_benchmark_signs_every_csr_in_process_and_over_grpc() -> None:
    measured = measure(CaCase(count=6, concurrency=2))

    assert len(measured.sign_s) == 6
    assert len(measured.grpc_s) == 6
    assert measured.sign_rate > 0
    assert measured.grpc_rate > 0
    rates = [f for f in figures(measured) if f.name == "CSRs signed per second"]
    assert [f.params["path"] for f in rates] == ["CertificateAuthority.sign", "gRPC"]
    assert all(f.target is not None for f in rates)
